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
    given = ["task:stsb", "task:PAWS-X", "valid", "pooled", str(sentences)]
    assert options.validate_fit_on(given, [TASKS["BQ"]]) == ["task:STS-B", "task:PAWSX", "valid", "pooled", str(sentences)]


@pytest.mark.parametrize("call, option", [
    (lambda: options.check_simcse_options("0.1,x", "su", "auto", None, 64, 1e-5, 1), "--dropout"),
    (lambda: options.check_simcse_options("1.0", "su", "auto", None, 64, 1e-5, 1), "--dropout"),
    (lambda: options.check_simcse_options("0.1", "infonce", "auto", None, 64, 1e-5, 1), "--loss"),
    (lambda: options.check_simcse_options("0.1", "su", "1", None, 64, 1e-5, 1), "--max-sentences"),
    (lambda: options.check_simcse_options("0.1", "su", "auto", 5, 64, 1e-5, 1), "--max-eval-pairs"),
    (lambda: options.check_simcse_options("0.1", "su", "auto", None, 1, 1e-5, 1), "--batch-size"),
    (lambda: options.check_simcse_options("0.1", "su", "auto", None, 64, 0.0, 1), "--lr"),
    (lambda: options.check_simcse_options("0.1", "su", "auto", None, 64, 1e-5, 0), "--epochs"),
    (lambda: options.parse_methods("raw,whitening"), "--methods"),
])
def test_bad_values_name_their_option(call, option):
    with pytest.raises(StsevalError, match=f"^{option}"):
        call()


def test_good_simcse_settings_pass():
    options.check_simcse_options("0.1,0.3", "cached", "all", 1000, 64, 1e-5, 1)


def test_model_dimension_reads_config_without_loading(tmp_path):
    from tiny_models import make_bert, make_sentence_transformers_folder

    assert options.model_dimension(str(make_bert(tmp_path / "bert"))) == 32
    assert options.model_dimension(str(make_sentence_transformers_folder(tmp_path / "st"))) == 32
    assert options.model_dimension("some-org/not-a-local-folder") is None  # hub names: checked after loading
    with pytest.raises(StsevalError, match="^--dims: 64 is larger than .* vector size 32"):
        options.check_dims_fit([None, 64], str(tmp_path / "bert"))
    options.check_dims_fit([None, 32], str(tmp_path / "bert"))
