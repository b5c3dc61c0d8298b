"""End-to-end `stseval whiten` on a tiny random BERT and a few hundred real pairs per split."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from stseval.cli import app
from stseval.whitening import load_whitening
from tiny_models import make_bert

runner = CliRunner()


@pytest.fixture
def tiny_bert(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path_factory.mktemp("home")))
    return make_bert(tmp_path_factory.mktemp("bert") / "tiny-bert", with_pooler=False)  # 64 positions: PAWSX gets capped


def run(*args):
    return runner.invoke(app, ["whiten", *args])


def test_whiten_writes_long_rows_and_grid_then_resumes(tiny_bert, sample_data_dir, tmp_path):
    out = tmp_path / "out"
    args = ["--model", str(tiny_bert), "--pooling", "cls,pooler,first-last-avg", "--dims", "full,8",
            "--tasks", "STS-B,PAWSX", "--fit-on", "valid", "--fit-on", "test", "--data-dir", str(sample_data_dir),
            "--out", str(out), "--bootstrap", "50"]
    first = run(*args)
    assert first.exit_code == 0, first.output
    rows = pd.read_csv(out / "whiten.csv", keep_default_na=False)
    # per task: 3 poolings x (raw + 2 fit-on x 2 dims) = 15 cells
    assert len(rows) == 30
    assert set(rows.fit_on) == {"", "valid", "test"}
    assert (rows.loc[rows.pooling == "pooler", "status"] == "n/a").all()
    ok = rows[rows.status == "ok"]
    assert ok.value.astype(float).between(-1, 1).all()
    assert (ok.n_pairs.astype(int) == 300).all()
    assert (ok.ci_low.astype(float) <= ok.value.astype(float)).all()
    assert (rows.data_sha256 != "").all() and (rows.command.str.startswith("stseval")).all()
    grid = pd.read_csv(out / "grid.csv")
    assert list(grid.columns[-4:]) == ["PAWSX", "STS-B", "avg", "w-avg"]
    assert (out / "grid.md").read_text().count("|") > 20

    again = run(*args)
    assert again.exit_code == 0
    assert "all 15 cells done" in again.output
    assert pd.read_csv(out / "whiten.csv", keep_default_na=False).equals(rows)


def test_same_seed_gives_same_numbers(tiny_bert, sample_data_dir, tmp_path):
    args = ["--model", str(tiny_bert), "--pooling", "last-avg", "--dims", "full", "--tasks", "STS-B",
            "--fit-on", "test", "--data-dir", str(sample_data_dir), "--bootstrap", "30"]
    assert run(*args, "--out", str(tmp_path / "a")).exit_code == 0
    assert run(*args, "--out", str(tmp_path / "b")).exit_code == 0
    columns = ["value", "ci_low", "ci_high"]
    first = pd.read_csv(tmp_path / "a" / "whiten.csv")[columns]
    second = pd.read_csv(tmp_path / "b" / "whiten.csv")[columns]
    pd.testing.assert_frame_equal(first, second)


def test_save_kernel_round_trips(tiny_bert, sample_data_dir, tmp_path):
    result = run("--model", str(tiny_bert), "--pooling", "cls", "--dims", "8", "--tasks", "STS-B",
                 "--fit-on", "valid", "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o"),
                 "--bootstrap", "0", "--save-kernel", str(tmp_path / "kernels"))
    assert result.exit_code == 0, result.output
    [saved] = list((tmp_path / "kernels").glob("*.npz"))
    whitening = load_whitening(saved)
    assert whitening.kernel.shape == (32, 8)
    assert whitening.provenance["fit_on"] == "valid"
    assert whitening.provenance["n_fit_vectors"] == 600


@pytest.mark.parametrize("args, option", [
    (["--pooling", "cls,mean-ish"], "--pooling"),
    (["--dims", "full,64"], "--dims"),
    (["--dims", "abc"], "--dims"),
    (["--tasks", ""], "--tasks"),
    (["--tasks", "NOPE"], "--tasks"),
    (["--fit-on", "train", "--tasks", "PAWSX"], "--fit-on"),
    (["--fit-on", "no-such-file.txt"], "--fit-on"),
])
def test_bad_option_is_a_one_line_error_naming_it(tiny_bert, sample_data_dir, tmp_path, args, option):
    base = {"--model": str(tiny_bert), "--tasks": "STS-B", "--pooling": "cls", "--dims": "full",
            "--data-dir": str(sample_data_dir), "--out": str(tmp_path / "o")}
    for name, value in zip(args[::2], args[1::2]):
        base[name] = value
    flat = [item for pair in base.items() for item in pair]
    result = run(*flat)
    assert result.exit_code == 2
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("stseval: ") and option in message
    assert not (tmp_path / "o" / "whiten.csv").exists()


def test_transfer_pooled_file_and_unnormalized_variants(tiny_bert, sample_data_dir, tmp_path):
    sentences = tmp_path / "corpus.txt"
    sentences.write_text("今天天气很好\n我喜欢吃苹果\n花呗怎么还款\n借钱\n你是什么人\n", encoding="utf-8")
    result = run("--model", str(tiny_bert), "--pooling", "last-avg", "--dims", "full", "--tasks", "STS-B,PAWSX",
                 "--fit-on", "task:PAWSX", "--fit-on", "pooled", "--fit-on", str(sentences), "--unnormalized",
                 "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o"), "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "o" / "whiten.csv", keep_default_na=False)
    stsb = rows[rows.task == "STS-B"]
    assert set(stsb.fit_on) == {"", "task:PAWSX", "pooled", "file:corpus.txt"}
    assert set(stsb.metric) == {"spearman_cosine", "spearman_dot"}
    # 2 tasks x 300 pairs x 2 sides x (valid + test + STS-B train where sampled) fit the pooled statistics
    fit_sizes = dict(zip(stsb.fit_on, stsb.extra))
    assert fit_sizes["file:corpus.txt"] == "n_fit_vectors=5"
    assert int(fit_sizes["pooled"].split("=")[1]) > int(fit_sizes["task:PAWSX"].split("=")[1])
    cosine = stsb[(stsb.fit_on == "pooled") & (stsb.metric == "spearman_cosine")].value.item()
    dot = stsb[(stsb.fit_on == "pooled") & (stsb.metric == "spearman_dot")].value.item()
    assert cosine != dot  # normalising after whitening changes the ranking


def test_transfer_source_is_encoded_once_for_all_poolings(tiny_bert, sample_data_dir, tmp_path, monkeypatch):
    import stseval.encoders as encoders

    calls = []
    real = encoders._encode_uncached
    monkeypatch.setattr(encoders, "_encode_uncached",
                        lambda encoder, texts, names, *args: calls.append(tuple(names)) or real(encoder, texts, names, *args))
    result = run("--model", str(tiny_bert), "--pooling", "cls,last-avg,max", "--dims", "full", "--tasks", "STS-B",
                 "--split", "test", "--fit-on", "task:PAWSX", "--data-dir", str(sample_data_dir),
                 "--out", str(tmp_path / "o"), "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    # one model pass for STS-B's own sentences, one for PAWSX's: each yields all three poolings
    assert calls == [("cls", "last-avg", "max")] * 2


def test_all_available_rows_say_which_splits(tiny_bert, sample_data_dir, tmp_path):
    result = run("--model", str(tiny_bert), "--pooling", "cls", "--dims", "full", "--tasks", "STS-B,PAWSX",
                 "--fit-on", "all-available", "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o"),
                 "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "o" / "whiten.csv", keep_default_na=False)
    whitened = rows[rows.method == "whitening"].set_index("task")
    assert set(whitened.fit_on) == {"all-available"}  # one grid row across tasks
    # STS-B has a train split here, PAWSX does not: 300 pairs x 2 sides per split
    assert whitened.loc["STS-B", "extra"] == "fit_splits=train+valid+test;n_fit_vectors=1800"
    assert whitened.loc["PAWSX", "extra"] == "fit_splits=valid+test;n_fit_vectors=1200"


def test_backend_is_recorded_in_rows_and_resumes_separately(tiny_bert, sample_data_dir, tmp_path):
    out = tmp_path / "out"
    args = ["--model", str(tiny_bert), "--pooling", "last-avg", "--dims", "full", "--tasks", "STS-B",
            "--fit-on", "test", "--data-dir", str(sample_data_dir), "--bootstrap", "0", "--out", str(out)]
    assert run(*args).exit_code == 0
    quantized = run(*args, "--backend", "int8")
    assert quantized.exit_code == 0, quantized.output
    assert "cells to compute" in quantized.output  # not "done": an int8 cell is another cell
    rows = pd.read_csv(out / "whiten.csv", keep_default_na=False)
    assert set(rows.model) == {str(tiny_bert), f"{tiny_bert}+int8"}
    assert rows.groupby("model").model_fingerprint.nunique().eq(1).all() and rows.model_fingerprint.nunique() == 2
    bad = run(*args, "--backend", "fast")
    assert bad.exit_code == 2 and "--backend fast" in bad.output
    no_workers = run(*args, "--processes", "0")
    assert no_workers.exit_code == 2 and "--processes 0" in no_workers.output
