"""stseval.options: the checks cli.py runs before any heavy import."""

import pytest

from stseval import options
from stseval.common.errors import StsevalError
from stseval.data.tasks import TASKS


def test_copied_constants_match_their_home_modules():
    from stseval.encoders import encoder as encoders
    from stseval.encoders import pooling
    from stseval.methods import index, simcse

    assert options.SIMCSE_LOSSES == tuple(simcse.LOSSES)
    assert options.REDUCTION_METHODS == tuple(index.REDUCTION_METHODS)
    assert options.DEFAULT_MODEL_NAMES == tuple(encoders.DEFAULT_MODEL_NAMES)
    assert pooling.POOLINGS is options.POOLINGS and pooling.parse_poolings is options.parse_poolings


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
    assert options.parse_dropouts("0.1,0.3,0.1") == [0.1, 0.3]
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
