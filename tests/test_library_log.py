"""Library chatter goes to the run folder's log file; the terminal keeps stseval's own lines."""

from __future__ import annotations

import logging
import warnings

from typer.testing import CliRunner

from stseval.cli import app
from stseval.common.library_log import libraries_to_log
from tiny_models import make_bert


def test_library_messages_and_warnings_go_to_the_file_and_everything_is_restored(tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    log_path = tmp_path / "runs" / "library.log"
    with libraries_to_log(log_path):
        hf_logging.get_logger("transformers.modeling_utils").warning("BertModel LOAD REPORT: pooler MISSING")
        logging.getLogger("sentence_transformers.trainer").warning("a sentence-transformers notice")
        warnings.warn("a library deprecation", DeprecationWarning, stacklevel=1)
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in out + err and "notice" not in out + err
    assert "deprecation" not in out + err
    text = log_path.read_text(encoding="utf-8")
    for expected in ("LOAD REPORT: pooler MISSING", "a sentence-transformers notice", "a library deprecation"):
        assert expected in text
    assert hf_logging.get_verbosity() == verbosity
    hf_logging.get_logger("transformers.modeling_utils").warning("after the block")
    assert "after the block" not in log_path.read_text(encoding="utf-8")


def test_simcse_train_terminal_shows_stseval_lines_and_the_grid_only(tmp_path, sts_b_dir, monkeypatch, capfd):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    model = make_bert(tmp_path / "tiny-bert", with_pooler=False)  # sentence-transformers reports the pooler MISSING
    capfd.readouterr()
    result = CliRunner().invoke(app, [
        "simcse-train", "--model", str(model), "--tasks", "STS-B", "--pooling", "cls", "--dropout", "0.1",
        "--batch-size", "16", "--lr", "1e-3", "--data-dir", str(sts_b_dir), "--out", str(tmp_path / "out"),
        "--runs-dir", str(tmp_path / "runs"), "--bootstrap", "0", "--checkpoint-steps", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out, err = capfd.readouterr()
    terminal = result.stdout + result.stderr + out + err
    for chatter in ("LOAD REPORT", "newly initialized", "Computing widget examples", "Writing model shards",
                    "{'loss'", "train_runtime"):
        assert chatter not in terminal, chatter
    assert result.stdout.startswith("# spearman_cosine x 100, test split")
    assert "STS-B cls dropout=0.1 seed=0: spearman" in result.stderr
    log_text = (tmp_path / "runs" / "simcse" / "library.log").read_text(encoding="utf-8")
    assert "LOAD REPORT" in log_text
