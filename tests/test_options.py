"""stseval.options: the checks cli.py runs before any heavy import."""

from pathlib import Path

import pytest

from stseval import options
from stseval.common import settings
from stseval.common.errors import StsevalError
from stseval.data.tasks import TASKS


def test_constants_have_one_home_and_the_others_re_export_it():
    from stseval.encoders import encoder as encoders
    from stseval.encoders import folders, pooling, precision
    from stseval.methods import index, simcse

    # options.py is their one home (torch-free); the modules that used to hold copies re-export the same objects
    assert simcse.LOSSES is options.SIMCSE_LOSSES
    assert index.REDUCTION_METHODS is options.REDUCTION_METHODS
    assert encoders.DEFAULT_MODEL_NAMES is folders.DEFAULT_MODEL_NAMES is options.DEFAULT_MODEL_NAMES
    assert folders.DEFAULT_MODEL_LABEL is options.DEFAULT_MODEL_LABEL
    assert precision.PRECISIONS is options.PRECISIONS
    # the setting values have one home, stseval/common/settings.py; the others re-export the same objects
    for name in ("POOLINGS", "NEEDS_POOLER", "LAYER_AVG", "Pooling", "layer_avg_index"):
        assert getattr(pooling, name) is getattr(settings, name), name
    for name in ("POOLINGS", "NEEDS_POOLER", "POOLING_NAMES", "SENTENCE_POOLING", "LAYER_AVG", "Pooling", "Dropout",
                 "parse_poolings", "parse_dropouts", "layer_avg_index"):
        assert getattr(options, name) is getattr(settings, name), name
    # encoders/pooling.parse_poolings: the same parser (it gave names to encoders/encoder.py before encode took values)
    assert pooling.parse_poolings is settings.parse_poolings
    assert [str(each) for each in pooling.parse_poolings("all,layer-avg:0-1")] == [*settings.POOLINGS, "layer-avg:0",
                                                                                   "layer-avg:1"]


def test_fit_on_task_names_are_spelled_as_the_registry_does(tmp_path):
    sentences = tmp_path / "s.txt"
    sentences.write_text("a\nb\n", encoding="utf-8")
    from stseval.runs.specs import parse_fit_on

    given = ["task:stsb", "task:PAWS-X", "valid", "pooled", str(sentences)]
    (tmp_path / "BQ").mkdir()
    (tmp_path / "BQ" / "BQ.valid.data").write_text("a\tb\t1\n", encoding="utf-8")  # --fit-on valid needs the file
    sources = parse_fit_on(given, [TASKS["BQ"]], tmp_path)
    assert [source.label for source in sources] == ["task:STS-B", "task:PAWSX", "valid", "pooled", "file:s.txt"]
    assert sources[-1].path == sentences


@pytest.mark.parametrize("call, option", [
    (lambda: options.parse_dropouts("0.1,x"), "--dropout"),
    (lambda: options.parse_dropouts("1.0"), "--dropout"),
    (lambda: options.check_loss("infonce"), "--loss"),
    (lambda: options.parse_max_sentences("1"), "--max-sentences"),
    (lambda: options.check_pairs_for_spearman("--max-eval-pairs", 5), "--max-eval-pairs"),
    (lambda: options.check_at_least([("--epochs", 1, 1), ("--batch-size", 1, 2)]), "--batch-size"),
    (lambda: options.check_learning_rate(0.0), "--lr"),
    (lambda: options.check_at_least([("--epochs", 0, 1)]), "--epochs"),
    (lambda: options.parse_methods("raw,whitening"), "--methods"),
    (lambda: options.check_dims_within([None, 64], 32, "tiny"), "--dims"),
])
def test_bad_values_name_their_option(call, option):
    with pytest.raises(StsevalError, match=f"^{option}"):
        call()


def test_good_simcse_settings_pass():
    assert options.parse_dropouts("0.1,0.3,0.1") == [options.Dropout(0.1), options.Dropout(0.3)]
    assert options.check_loss("cached") == "cached"
    assert options.parse_max_sentences("all") is None and options.parse_max_sentences("auto") == "auto"
    assert options.parse_max_sentences(" 2000 ") == 2000
    options.check_pairs_for_spearman("--max-eval-pairs", 1000)
    options.check_pairs_for_spearman("--curve-pairs", 0, off=" (0 turns the curve off)")
    options.check_at_least([("--batch-size", 64, 2), ("--limit", None, 1)])


def test_model_dimension_reads_config_without_loading(tmp_path):
    from tiny_models import make_bert, make_sentence_transformers_folder

    assert options.model_dimension(str(make_bert(tmp_path / "bert"))) == 32
    assert options.model_dimension(str(make_sentence_transformers_folder(tmp_path / "st"))) == 32
    assert options.model_dimension("some-org/not-a-local-folder") is None  # hub names: checked after loading
    with pytest.raises(StsevalError, match="^--dims: 64 is larger than .* vector size 32"):
        options.check_dims_fit([None, 64], str(tmp_path / "bert"))
    options.check_dims_fit([None, 32], str(tmp_path / "bert"))


def test_layer_avg_is_checked_against_the_model_s_layers_from_config(tmp_path):
    import json

    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8, "num_hidden_layers": 4}))
    options.check_layers_fit(options.parse_poolings("layer-avg:0,layer-avg:4,cls"), str(tmp_path))
    with pytest.raises(StsevalError, match="--pooling layer-avg:5: .* has 4 Transformer layers"):
        options.check_layers_fit(options.parse_poolings("layer-avg:0-5"), str(tmp_path))
    # unknown depth: checked after loading
    options.check_layers_fit(options.parse_poolings("layer-avg:99"), str(tmp_path / "not-a-model"))


@pytest.mark.parametrize("call, option", [
    (lambda: options.parse_exponents("0,x", "--beta"), "--beta"),
    (lambda: options.parse_exponents("1.5", "--gamma"), "--gamma"),
    (lambda: options.parse_exponents("", "--gamma"), "--gamma"),
    (lambda: options.parse_methods("whitening,zca", options.WHITEN_METHODS), "--methods"),
    (lambda: options.check_plot("heat", {}), "--plot"),
    (lambda: options.check_plot("rotation", {"--reference": True}), "--reference"),
])
def test_study_options_name_themselves(call, option):
    with pytest.raises(StsevalError, match=option):
        call()


def test_exponents_parse_once_and_label_exactly():
    assert options.parse_exponents("0, 0.5,1,0.50", "--beta") == [0.0, 0.5, 1.0]
    assert [options.exponent_label(value) for value in (1.0, 0.0, 0.25, 0.75)] == ["1", "0", "0.25", "0.75"]
    assert float(options.exponent_label(1 / 3)) == 1 / 3  # no digits lost in a row or file name


@pytest.mark.parametrize("given, suggested", [("lastavg", "last-avg"), ("first_last_avg", "first-last-avg"),
                                              ("clss", "cls"), ("pooler_tanh", "pooler-tanh"), ("al", "all")])
def test_an_unknown_pooling_gets_a_suggestion(given, suggested):
    with pytest.raises(StsevalError, match=f"^--pooling: unknown pooling '{given}'; did you mean {suggested}\\? "
                                           "choose from cls, "):
        options.parse_poolings(given)


def test_a_pooling_far_from_every_name_gets_only_the_choices():
    with pytest.raises(StsevalError, match="^--pooling: unknown pooling 'xyzzy'; choose from cls, "):
        options.parse_poolings("xyzzy")


def test_missing_model_folder_check_agrees_with_the_loader(tmp_path):
    """options.check_model_folder (before loading) refuses what encoder._resolve_folder refuses, in its words."""
    from stseval.encoders.encoder import _resolve_folder

    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"")
    for model in ("./no/such/model", "/no/such/model", "~/no/such/model", "no/such/model", str(a_file)):
        with pytest.raises(StsevalError) as early:
            options.check_model_folder(model)
        with pytest.raises(StsevalError) as late:
            _resolve_folder(model)
        assert str(early.value) == str(late.value)
    for model in (str(tmp_path), "default", "vectors:/x", "owner/name", "all-MiniLM-L6-v2", f"{tmp_path}+int8"):
        options.check_model_folder(model)  # a folder, a name, or a hub id: the loader decides


def test_out_inside_the_committed_results_is_refused_unless_forced(monkeypatch, tmp_path):
    from stseval.data.tasks import PROJECT_ROOT

    assert PROJECT_ROOT is not None  # the tests run from a checkout
    monkeypatch.delenv(options.WRITE_RESULTS_ENV, raising=False)
    monkeypatch.chdir(PROJECT_ROOT)
    for out in ("results", "results/whitening", "./results/report/", str(PROJECT_ROOT / "results" / "new"),
                "runs/../results/x"):
        with pytest.raises(StsevalError, match=f"^--out {Path(out)}: results/ holds the committed outputs of "
                                               "scripts/; .* add --force"):
            options.check_out_dir(Path(out), force=False)
        options.check_out_dir(Path(out), force=True)
    for out in ("runs/whitening", "results-mine", str(tmp_path / "results"), "runs/results"):
        options.check_out_dir(Path(out), force=False)
    monkeypatch.setenv(options.WRITE_RESULTS_ENV, "1")  # what scripts/*.sh set
    options.check_out_dir(Path("results/whitening"), force=False)

