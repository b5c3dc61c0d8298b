"""End-to-end `stseval whiten` on a tiny random BERT and a few hundred real pairs per split."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from stseval.cli import app
from stseval.methods.whitening import load_whitening
from tiny_models import make_bert

runner = CliRunner()


@pytest.fixture
def tiny_bert(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path_factory.mktemp("home")))
    # 64 positions: PAWSX gets capped
    return make_bert(tmp_path_factory.mktemp("bert") / "tiny-bert", with_pooler=False)


def run(*args):
    return runner.invoke(app, ["whiten", *args])


def whiten_rows(out: Path, *args) -> pd.DataFrame:
    """Runs `stseval whiten *args --out out`, asserts it succeeded, and returns out/whiten.csv (empty cells as "")."""
    result = run(*args, "--out", str(out))
    assert result.exit_code == 0, result.output
    return pd.read_csv(out / "whiten.csv", keep_default_na=False)


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
    assert (ok.n_pairs.astype(int) == 300).all()
    assert (ok.ci_low.astype(float) <= ok.value.astype(float)).all()
    assert (rows.data_sha256 != "").all() and (rows.command.str.startswith("stseval")).all()
    # every option asked for changes the numbers: whitening or not, each --fit-on, each --dims
    value = {(r.pooling, r.method, str(r.dims), r.fit_on, r.task): float(r.value) for r in ok.itertuples()}
    for pooling in ("cls", "first-last-avg"):
        for task in ("STS-B", "PAWSX"):
            cells = [("raw", "full", "")] + [("whitening", dims, fit)
                                             for dims in ("full", "8") for fit in ("valid", "test")]
            assert len({value[pooling, method, dims, fit, task] for method, dims, fit in cells}) == 5, (pooling, task)
    # the grid is a view of the rows: each cell is its row's value x 100, n/a where the model has no pooler
    grid = pd.read_csv(out / "grid.csv", dtype=str, keep_default_na=False)
    assert list(grid.columns[-4:]) == ["STS-B", "PAWSX", "avg", "w-avg"]  # the --tasks order
    assert len(grid) == 15
    for cell in grid.to_dict("records"):
        for task in ("STS-B", "PAWSX"):
            row = rows[(rows.pooling == cell["pooling"]) & (rows.method == cell["method"])
                       & (rows.dims.astype(str) == cell["dims"]) & (rows.fit_on == cell["fit_on"])
                       & (rows.task == task)]
            expected = "n/a" if row.status.item() == "n/a" else f"{100 * float(row.value.item()):.2f}"
            assert cell[task] == expected, (cell, task)
    # and grid.md shows the same table (best cells in bold)
    table = [line for line in (out / "grid.md").read_text().splitlines() if line.startswith("|")]
    cells_of = lambda line: [text.strip().strip("*") for text in line.strip().strip("|").split("|")]  # noqa: E731
    assert cells_of(table[0]) == list(grid.columns)
    assert [cells_of(line) for line in table[2:]] == grid.values.tolist()

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
    for name, value in zip(args[::2], args[1::2], strict=True):
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
                 "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o"), "--bootstrap", "0",
                 "--allow-low-rank")  # 5 sentences span 4 of 32 directions
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "o" / "whiten.csv", keep_default_na=False)
    stsb = rows[rows.task == "STS-B"]
    assert set(stsb.fit_on) == {"", "task:PAWSX", "pooled", "file:corpus.txt"}
    assert set(stsb.metric) == {"spearman_cosine", "spearman_dot"}
    # 2 tasks x 300 pairs x 2 sides x (valid + test + STS-B train where sampled) fit the pooled statistics
    fit_sizes = dict(zip(stsb.fit_on, stsb.n_fit, strict=True))
    assert fit_sizes["file:corpus.txt"] == 5
    assert int(fit_sizes["pooled"]) > int(fit_sizes["task:PAWSX"])
    cosine = stsb[(stsb.fit_on == "pooled") & (stsb.metric == "spearman_cosine")].value.item()
    dot = stsb[(stsb.fit_on == "pooled") & (stsb.metric == "spearman_dot")].value.item()
    assert cosine != dot  # normalising after whitening changes the ranking


def test_transfer_source_is_encoded_once_for_all_poolings(tiny_bert, sample_data_dir, tmp_path, monkeypatch):
    import stseval.encoders.encoder as encoders

    calls = []
    real = encoders._encode_uncached
    monkeypatch.setattr(encoders, "_encode_uncached",
                        lambda encoder, texts, poolings, *args:  # Pooling values since encode() takes them
                        calls.append(tuple(map(str, poolings))) or real(encoder, texts, poolings, *args))
    result = run("--model", str(tiny_bert), "--pooling", "cls,last-avg,max", "--dims", "full", "--tasks", "STS-B",
                 "--split", "test", "--fit-on", "task:PAWSX", "--data-dir", str(sample_data_dir),
                 "--out", str(tmp_path / "o"), "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    # one model pass for STS-B's own sentences, one for PAWSX's: each yields all three poolings
    assert calls == [("cls", "last-avg", "max")] * 2


def test_all_available_rows_say_which_splits(tiny_bert, sample_data_dir, tmp_path):
    rows = whiten_rows(tmp_path / "o", "--model", str(tiny_bert), "--pooling", "cls", "--dims", "full", "--tasks",
                       "STS-B,PAWSX", "--fit-on", "all-available", "--data-dir", str(sample_data_dir),
                       "--bootstrap", "0")
    whitened = rows[rows.method == "whitening"].set_index("task")
    assert set(whitened.fit_on) == {"all-available"}  # one grid row across tasks
    # STS-B has a train split here, PAWSX does not: 300 pairs x 2 sides per split
    assert whitened.loc["STS-B", ["fit_splits", "n_fit"]].tolist() == ["train+valid+test", 1800]
    assert whitened.loc["PAWSX", ["fit_splits", "n_fit"]].tolist() == ["valid+test", 1200]
    assert set(whitened.beta.astype(str)) == set(whitened.gamma.astype(str)) == {"1"}  # plain BERT-whitening
    assert "extra" not in rows.columns


def test_two_runs_at_once_into_one_out_keep_both_tasks_rows(tiny_bert, sample_data_dir, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "out"
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    processes = [subprocess.Popen(
        [sys.executable, "-m", "stseval.cli", "whiten", "--model", str(tiny_bert), "--pooling", "cls",
         "--dims", "full", "--tasks", task, "--fit-on", "test", "--data-dir", str(sample_data_dir),
         "--out", str(out), "--bootstrap", "0"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for task in ("STS-B", "PAWSX")]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    rows = pd.read_csv(out / "whiten.csv", keep_default_na=False)
    assert sorted(set(rows.task)) == ["PAWSX", "STS-B"]
    assert len(rows) == 4  # per task: raw + whitening


@pytest.mark.parametrize("change", ["data", "model"])
def test_out_holding_rows_of_other_data_or_weights_is_refused_before_computing(
        change, tiny_bert, sample_data_dir, tmp_path, monkeypatch):
    import shutil

    import stseval.encoders.encoder as encoders

    data_dir = tmp_path / "data"
    shutil.copytree(sample_data_dir, data_dir)
    out = tmp_path / "out"
    args = ["--model", str(tiny_bert), "--pooling", "cls", "--dims", "full", "--tasks", "STS-B", "--fit-on", "test",
            "--data-dir", str(data_dir), "--out", str(out), "--bootstrap", "0"]
    assert run(*args).exit_code == 0
    before = (out / "whiten.csv").read_bytes()
    if change == "data":
        test_file = next(data_dir.glob("STS-B/*test*"))
        lines = test_file.read_text(encoding="utf-8").splitlines(keepends=True)
        test_file.write_text("".join(lines[:-1]), encoding="utf-8")  # one pair fewer: another checksum
    else:
        make_bert(tiny_bert, with_pooler=False, seed=1)  # retrained in place: same name, other weights
    encoded = []
    monkeypatch.setattr(encoders, "_encode_uncached", lambda *a, **k: encoded.append(1) / 0)

    result = run(*args)
    assert result.exit_code == 2
    message = result.output.strip().splitlines()[-1]
    column = "data_sha256" if change == "data" else "model_fingerprint"
    assert column in message and "whiten.csv:2, 3" in message and "Ways out" in message and "--out" in message
    assert encoded == [] and (out / "whiten.csv").read_bytes() == before


def test_out_holding_rows_of_other_library_versions_names_each_library_and_both_versions(
        tiny_bert, sample_data_dir, tmp_path, monkeypatch):
    import stseval.encoders.encoder as encoders
    from stseval.runs.results import library_versions

    out = tmp_path / "out"
    args = ["--model", str(tiny_bert), "--pooling", "cls", "--dims", "full", "--tasks", "STS-B", "--fit-on", "test",
            "--data-dir", str(sample_data_dir), "--out", str(out), "--bootstrap", "0"]
    assert run(*args).exit_code == 0
    ours = dict(part.split("=", 1) for part in library_versions().split(";"))
    theirs = {**ours, "torch": "1.0.0", "numpy": "1.0.0"}  # made with an older torch and numpy
    rows = pd.read_csv(out / "whiten.csv", keep_default_na=False, dtype=str)
    rows["versions"] = ";".join(f"{name}={version}" for name, version in theirs.items())
    rows.to_csv(out / "whiten.csv", index=False)
    before = (out / "whiten.csv").read_bytes()
    encoded = []
    monkeypatch.setattr(encoders, "_encode_uncached", lambda *a, **k: encoded.append(1) / 0)

    result = run(*[arg if arg != "cls" else "last-avg" for arg in args])  # new cells, same file
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    message = result.output.strip().splitlines()[-1]
    assert (f"other library versions (torch 1.0.0 there, {ours['torch']} in this run; numpy 1.0.0 there, "
            f"{ours['numpy']} in this run, first at whiten.csv:2, 3)") in message
    assert "python" not in message and "transformers" not in message  # only the libraries that differ
    assert encoded == [] and (out / "whiten.csv").read_bytes() == before


def _five_sentences(tmp_path):
    sentences = tmp_path / "corpus.txt"
    sentences.write_text("今天天气很好\n我喜欢吃苹果\n花呗怎么还款\n借钱\n你是什么人\n", encoding="utf-8")
    return sentences


@pytest.mark.parametrize("dims", ["full", "8"])
def test_fit_with_fewer_vectors_than_dims_is_refused_before_encoding(dims, tiny_bert, sample_data_dir, tmp_path):
    result = run("--model", str(tiny_bert), "--pooling", "cls", "--dims", dims, "--tasks", "STS-B",
                 "--fit-on", str(_five_sentences(tmp_path)), "--data-dir", str(sample_data_dir),
                 "--out", str(tmp_path / "o"), "--bootstrap", "0")
    assert result.exit_code == 2
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("stseval: --fit-on file:corpus.txt: 5 vectors of 32 dims have covariance rank 4")
    assert "--allow-low-rank" in message and f"--dims {dims}" in message
    assert not (tmp_path / "o" / "whiten.csv").exists()


def test_low_rank_fit_is_scored_when_asked_and_records_n_fit_and_rank(tiny_bert, sample_data_dir, tmp_path):
    common = ["--model", str(tiny_bert), "--pooling", "cls", "--tasks", "STS-B", "--data-dir", str(sample_data_dir),
              "--bootstrap", "0"]
    ok = run(*common, "--dims", "4,full", "--fit-on", str(_five_sentences(tmp_path)), "--fit-on", "test",
             "--out", str(tmp_path / "o"), "--allow-low-rank")
    assert ok.exit_code == 0, ok.output
    rows = pd.read_csv(tmp_path / "o" / "whiten.csv", keep_default_na=False)
    whitened = rows[rows.method == "whitening"].set_index(["fit_on", "dims"])
    assert whitened.loc[("file:corpus.txt", "full"), ["n_fit", "fit_rank"]].tolist() == [5, 4]
    # the tiny BERT's cls is a LayerNorm output: rank 31 of 32 however many vectors (see _supported_dims)
    assert whitened.loc[("test", "full"), ["n_fit", "fit_rank"]].tolist() == [600, 31]
    assert rows.loc[rows.method == "raw", ["n_fit", "fit_rank"]].values.tolist() == [[0, 0]]
    # k within the rank needs no option
    assert run(*common, "--dims", "4", "--fit-on", str(_five_sentences(tmp_path)),
               "--out", str(tmp_path / "p")).exit_code == 0


def test_fit_rank_counts_the_directions_the_vectors_span(rng):
    from stseval.methods.whitening import fit_whitening_basis

    full = rng.normal(size=(200, 16))
    collapsed = full.copy()
    collapsed[:, 3] = 2.0  # no variance along one axis
    for vectors, expected in ((full, 16), (collapsed, 15), (full[:5], 4)):
        assert fit_whitening_basis(vectors).rank == expected


def test_one_direction_missing_from_layer_norm_outputs_is_the_model_s_not_the_fit_s(rng):
    from stseval.methods.whitening import fit_whitening_basis
    from stseval.runs.whiten import _supported_dims

    vectors = rng.normal(size=(200, 16))
    vectors -= vectors.mean(axis=1, keepdims=True)  # LayerNorm: every vector's coordinates sum to 0
    rank = fit_whitening_basis(vectors).rank
    assert rank == 15 and _supported_dims(200, rank, 16) == 16
    assert _supported_dims(16, 15, 16) == 15  # too few vectors: the fit's shortfall, not the model's
    assert _supported_dims(200, 14, 16) == 14


def test_fit_whose_rank_falls_short_is_refused_when_fitted(tiny_bert, sample_data_dir, tmp_path):
    repeated = tmp_path / "repeated.txt"
    repeated.write_text(_five_sentences(tmp_path).read_text(encoding="utf-8") * 8, encoding="utf-8")  # 40 lines
    result = run("--model", str(tiny_bert), "--pooling", "cls", "--dims", "full", "--tasks", "STS-B",
                 "--fit-on", str(repeated), "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o"),
                 "--bootstrap", "0")
    assert result.exit_code == 2
    message = result.output.strip().splitlines()[-1]
    assert "40 vectors of 32 dims have covariance rank 4, so --dims full would keep 28" in message


def test_repeated_option_values_write_each_cell_once(tiny_bert, sample_data_dir, tmp_path):
    result = run("--model", str(tiny_bert), "--pooling", "cls,cls", "--dims", "full,full,8,08", "--tasks", "STS-B",
                 "--fit-on", "test", "--fit-on", "test", "--data-dir", str(sample_data_dir),
                 "--out", str(tmp_path / "o"), "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "o" / "whiten.csv", keep_default_na=False)
    assert sorted(zip(rows.method, rows.dims.astype(str), strict=True)) == [
        ("raw", "full"), ("whitening", "8"), ("whitening", "full")]


def test_pooler_alone_on_a_model_without_one_gives_na_cells(tiny_bert, sample_data_dir, tmp_path):
    rows = whiten_rows(tmp_path / "o", "--model", str(tiny_bert), "--pooling", "pooler", "--dims", "full", "--tasks",
                       "STS-B", "--fit-on", "test", "--data-dir", str(sample_data_dir), "--bootstrap", "0")
    assert len(rows) == 2 and (rows.status == "n/a").all() and (rows.pooling == "pooler").all()
    assert "n/a" in (tmp_path / "o" / "grid.md").read_text()


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tiny_bert, sample_data_dir, tmp_path, monkeypatch):
    import stseval.runs.whiten as whiten_run

    real_score_task, calls = whiten_run._score_task, []

    def interrupted_on_second_task(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_score_task(*args, **kwargs)

    monkeypatch.setattr(whiten_run, "_score_task", interrupted_on_second_task)
    out = tmp_path / "out"
    args = ["--model", str(tiny_bert), "--pooling", "cls", "--dims", "full", "--tasks", "STS-B,PAWSX",
            "--fit-on", "test", "--data-dir", str(sample_data_dir), "--out", str(out), "--bootstrap", "0"]
    result = run(*args)
    assert result.exit_code == 130
    assert result.output.strip().splitlines()[-1] == (
        f"stseval: interrupted; {out / 'whiten.csv'} keeps 2 finished row(s), encoded vectors stay in the "
        "embedding cache; run the same command again to resume")
    monkeypatch.setattr(whiten_run, "_score_task", real_score_task)
    resumed = run(*args)
    assert resumed.exit_code == 0 and "STS-B: all 2 cells done" in resumed.output


def test_sigint_exits_130_with_one_line(tiny_bert, sample_data_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "stseval.cli", "whiten", "--model", str(tiny_bert), "--pooling", "cls,last-avg,max",
         "--dims", "full,16,8", "--tasks", "ATEC,BQ,LCQMC,PAWSX,STS-B", "--data-dir", str(sample_data_dir),
         "--out", str(tmp_path / "out"), "--bootstrap", "1000"],
        cwd=root, env=dict(os.environ, PYTHONPATH=str(root)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a test run started in the background (nohup, &) would pass SIGINT on ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stderr:  # wait until the grid is running, then press Ctrl-C
        if "cells to compute" in line:
            process.send_signal(signal.SIGINT)
            break
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest[-2000:]
    last = rest.strip().splitlines()[-1]
    assert last.startswith("stseval: interrupted; ") and last.endswith("run the same command again to resume")


def test_finished_cells_are_redone_when_save_kernel_asks_for_a_missing_kernel(tiny_bert, sample_data_dir, tmp_path):
    args = ["--model", str(tiny_bert), "--pooling", "cls,pooler", "--dims", "full,8", "--tasks", "STS-B",
            "--fit-on", "valid", "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o"), "--bootstrap", "0"]
    assert run(*args).exit_code == 0
    before = pd.read_csv(tmp_path / "o" / "whiten.csv", keep_default_na=False)
    kernels = tmp_path / "kernels"
    again = run(*args, "--save-kernel", str(kernels))
    assert again.exit_code == 0, again.output
    assert "2 of 6 cells to compute (2 done but without their --save-kernel file)" in again.output
    saved = sorted(path.name for path in kernels.glob("*.npz"))
    assert len(saved) == 2 and "_cls_STS-B_fit-valid_8_" in saved[0] and "_full_" in saved[1]
    after = pd.read_csv(tmp_path / "o" / "whiten.csv", keep_default_na=False)
    assert len(after) == len(before)  # the redone cells replace their rows, with the same numbers
    key = ["pooling", "method", "dims", "fit_on"]
    pd.testing.assert_frame_equal(before.sort_values(key)[key + ["value"]].reset_index(drop=True),
                                  after.sort_values(key)[key + ["value"]].reset_index(drop=True))
    third = run(*args, "--save-kernel", str(kernels))
    assert "all 6 cells done, skipping" in third.output


def test_recorded_command_is_shell_quoted_and_reruns_to_the_same_cells(tiny_bert, sample_data_dir, tmp_path,
                                                                       monkeypatch):
    import shlex
    import sys

    args = ["whiten", "--model", str(tiny_bert), "--pooling", "last-avg", "--dims", "full", "--tasks", "STS-B",
            "--prefix", "", "--fit-on", "test", "--data-dir", str(sample_data_dir), "--out", "o", "--bootstrap", "20"]
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    monkeypatch.chdir(first_dir)
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/stseval", *args])
    assert runner.invoke(app, args).exit_code == 0
    first = pd.read_csv(first_dir / "o" / "whiten.csv", keep_default_na=False)
    [command] = set(first.command)
    assert "--prefix '' --fit-on test" in command
    assert shlex.split(command) == ["stseval", *args]

    monkeypatch.chdir(second_dir)
    rerun = shlex.split(command)[1:]
    monkeypatch.setattr(sys, "argv", ["stseval", *rerun])
    assert runner.invoke(app, rerun).exit_code == 0
    second = pd.read_csv(second_dir / "o" / "whiten.csv", keep_default_na=False)
    cells = ["model", "model_fingerprint", "pooling", "method", "dims", "fit_on", "prefix", "task", "split",
             "metric", "data_sha256", "value", "ci_low", "ci_high", "command"]
    pd.testing.assert_frame_equal(first[cells], second[cells])


def test_rows_carry_the_time_their_cell_was_computed(tiny_bert, sample_data_dir, tmp_path, monkeypatch):
    import stseval.runs.whiten as whiten_run

    stamps = iter(f"2026-01-01T00:00:{second:02d}+00:00" for second in range(60))
    monkeypatch.setattr(whiten_run, "_now", lambda: next(stamps))
    rows = whiten_rows(tmp_path / "o", "--model", str(tiny_bert), "--pooling", "cls", "--dims", "full", "--tasks",
                       "STS-B,PAWSX", "--fit-on", "test", "--data-dir", str(sample_data_dir), "--bootstrap", "0")
    assert rows.created_at.nunique() == len(rows) == 4


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


def test_a_legacy_results_file_resumes_without_recomputing_and_is_rewritten_on_the_next_write(
        tiny_bert, sample_data_dir, tmp_path, monkeypatch):
    import stseval.encoders.encoder as encoders
    from legacy_results import WHITEN_KEYS, write_legacy

    out = tmp_path / "out"
    args = ["--model", str(tiny_bert), "--pooling", "cls,pooler", "--dims", "full,8", "--tasks", "STS-B,PAWSX",
            "--fit-on", "all-available", "--fit-on", "valid", "--data-dir", str(sample_data_dir), "--out", str(out),
            "--bootstrap", "0"]
    assert run(*args).exit_code == 0
    current = write_legacy(out / "whiten.csv", WHITEN_KEYS)  # as a run of the old code left it
    assert "extra" in (out / "whiten.csv").read_text(encoding="utf-8").splitlines()[0]
    encoded = []
    real = encoders._encode_uncached
    monkeypatch.setattr(encoders, "_encode_uncached", lambda *a, **k: encoded.append(1) or real(*a, **k))

    resumed = run(*args)
    assert resumed.exit_code == 0, resumed.output
    assert "STS-B: all 10 cells done, skipping" in resumed.output and encoded == []

    more = run(*[arg if arg != "full,8" else "full,8,4" for arg in args])  # one new dims: a write
    assert more.exit_code == 0, more.output
    assert "STS-B: 4 of 14 cells to compute" in more.output
    rewritten = pd.read_csv(out / "whiten.csv", dtype=str, keep_default_na=False)
    assert list(rewritten.columns) == list(current.columns)  # the current columns, no `extra`
    old_cells = rewritten[rewritten.dims != "4"].reset_index(drop=True)
    assert (rewritten.loc[rewritten.dims == "4", "max_length"] != "").all()
    pd.testing.assert_frame_equal(old_cells, current)  # every legacy row back in its columns, values unchanged


# ---------------------------------------------------------------------------------------------
# issue 13: beta/gamma whitening, pca and raw truncation, --choose-on, layer-avg poolings

STUDY = ["--tasks", "STS-B", "--fit-on", "valid", "--bootstrap", "0"]


def _keyed(frame):
    """{cell key: value} of a results frame read back from disk."""
    from stseval.runs.results import cell_key

    return {cell_key(record): record["value"] for _, record in frame.astype(str).iterrows()}


def test_beta_gamma_one_rows_are_today_s_whitening_rows(tiny_bert, sample_data_dir, tmp_path):
    from stseval.data.tasks import TASKS, load_pairs
    from stseval.encoders.cache import EmbeddingCache
    from stseval.encoders.encoder import encode, load_encoder
    from stseval.evaluation.scoring import score_pairs
    from stseval.methods.whitening import Whitening, fit_whitening

    common = ["--model", str(tiny_bert), "--pooling", "last-avg", "--dims", "full,8", *STUDY,
              "--data-dir", str(sample_data_dir)]
    assert run(*common, "--out", str(tmp_path / "plain")).exit_code == 0
    grid = run(*common, "--out", str(tmp_path / "grid"), "--beta", "0,0.5,1", "--gamma", "0,1",
               "--methods", "whitening,pca,raw-truncate")
    assert grid.exit_code == 0, grid.output
    plain = pd.read_csv(tmp_path / "plain" / "whiten.csv", dtype=str, keep_default_na=False)
    rows = pd.read_csv(tmp_path / "grid" / "whiten.csv", dtype=str, keep_default_na=False)
    assert set(plain.method) == {"raw", "whitening"} and set(plain.beta) == {"", "1"}
    # every row of the default run is in the grid run, same cell key, same value
    assert _keyed(plain).items() <= _keyed(rows).items()
    whitened = rows[rows.method == "whitening"]
    exponents = sorted(set(zip(whitened.beta, whitened.gamma, strict=True)))
    assert exponents == [(b, g) for b in ("0", "0.5", "1") for g in ("0", "1")]
    assert len(set(whitened.value)) == len(whitened)  # each (beta, gamma, dims) is its own number
    # and the default cell is BERT-whitening as fit_whitening computes it (the function the run used before)
    encoder, spec = load_encoder(str(tiny_bert)), TASKS["STS-B"]
    valid, test = load_pairs(spec, "valid", sample_data_dir), load_pairs(spec, "test", sample_data_dir)
    vectors = lambda pairs, side: encode(encoder, [getattr(p, side) for p in pairs], ["last-avg"],  # noqa: E731
                                         max_length=spec.max_length, cache=EmbeddingCache(),
                                         show_progress=False)["last-avg"]
    fit = np.concatenate([vectors(valid, "sentence1"), vectors(valid, "sentence2")])
    whitening = Whitening(*fit_whitening(fit, 8))
    score = score_pairs(whitening.apply(vectors(test, "sentence1")), whitening.apply(vectors(test, "sentence2")),
                        np.array([p.score for p in test]), 0, 0)
    cell = plain[(plain.method == "whitening") & (plain.dims == "8")]
    assert float(cell.value.item()) == pytest.approx(score.spearman, abs=5e-7)  # the CSV keeps 6 digits


def test_pca_at_full_k_is_a_rotation_that_leaves_cosines_unchanged(tiny_bert, sample_data_dir, tmp_path):
    from stseval.data.tasks import TASKS, load_pairs
    from stseval.encoders.cache import EmbeddingCache
    from stseval.encoders.encoder import encode, load_encoder
    from stseval.evaluation.metrics import cosine_scores as cosine
    from stseval.evaluation.scoring import score_pairs
    from stseval.methods.whitening import fit_whitening_basis

    result = run("--model", str(tiny_bert), "--pooling", "cls", "--dims", "full,8", *STUDY,
                 "--methods", "pca,raw-truncate", "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "o" / "whiten.csv", dtype=str, keep_default_na=False).set_index(["method", "dims"])
    assert (rows.loc[("pca", "full"), ["beta", "gamma", "fit_on"]] == ["0", "0", "valid"]).all()
    assert rows.loc[("raw-truncate", "full"), "value"] == rows.loc[("raw", "full"), "value"]  # k = d keeps everything
    # the pca row by hand: valid vectors give the axes, test vectors are rotated onto them
    encoder, spec = load_encoder(str(tiny_bert)), TASKS["STS-B"]
    valid, test = load_pairs(spec, "valid", sample_data_dir), load_pairs(spec, "test", sample_data_dir)
    vectors = lambda pairs, side: encode(encoder, [getattr(p, side) for p in pairs], ["cls"],  # noqa: E731
                                         max_length=spec.max_length, cache=EmbeddingCache(), show_progress=False)["cls"]
    rotation = fit_whitening_basis(np.concatenate([vectors(valid, "sentence1"), vectors(valid, "sentence2")])
                                   ).whitening(0.0, 0.0)
    side_a, side_b = vectors(test, "sentence1"), vectors(test, "sentence2")
    rotated_a, rotated_b = rotation.apply(side_a), rotation.apply(side_b)
    np.testing.assert_allclose(cosine(rotated_a, rotated_b), cosine(side_a, side_b), atol=2e-6)
    score = score_pairs(rotated_a, rotated_b, np.array([p.score for p in test]), 0, 0)
    assert float(rows.loc[("pca", "full"), "value"]) == pytest.approx(score.spearman, abs=5e-7)
    # the raw row differs from it only where float noise reorders near-equal cosines (random tiny BERT)
    assert abs(float(rows.loc[("pca", "full"), "value"]) - float(rows.loc[("raw", "full"), "value"])) < 0.01


def _reversed_test_labels(source, target):
    """A copy of the STS-B sample whose test labels are turned around (5 - score): test says the opposite."""
    import shutil

    shutil.copytree(source, target)
    path = target / "STS-B" / "STS-B.test.data"
    lines = path.read_text(encoding="utf-8").splitlines()
    flipped = [f"{a}\t{b}\t{5 - float(score):g}" for a, b, score in (line.rsplit("\t", 2) for line in lines)]
    path.write_text("\n".join(flipped) + "\n", encoding="utf-8")
    return target


def test_choose_on_valid_never_reads_test(tiny_bert, sample_data_dir, tmp_path):
    flipped = _reversed_test_labels(sample_data_dir, tmp_path / "flipped")
    common = ["--model", str(tiny_bert), "--pooling", "cls,last-avg", "--dims", "full,8,4", *STUDY,
              "--beta", "0,1", "--gamma", "0,0.5,1", "--methods", "whitening,pca,raw-truncate", "--choose-on", "valid"]
    chosen = {}
    for name, folder in (("real", sample_data_dir), ("flipped", flipped)):
        result = run(*common, "--data-dir", str(folder), "--out", str(tmp_path / name))
        assert result.exit_code == 0, result.output
        rows = pd.read_csv(tmp_path / name / "whiten.csv", dtype=str, keep_default_na=False)
        picks = rows[rows.method.str.endswith("-chosen")]
        assert sorted(picks.method) == sorted(["whitening-chosen", "pca-chosen", "raw-truncate-chosen"] * 2)
        assert set(picks.split) == {"test"} and set(picks.chosen_on) == {"valid"}
        for pick in picks.itertuples():
            family = rows[(rows.method == pick.method.removesuffix("-chosen")) & (rows.pooling == pick.pooling)]
            valid = family[family.split == "valid"]
            # the best valid score chose it, and the chosen row reports that setting's test row
            assert float(pick.best_valid_spearman) == pytest.approx(valid.value.astype(float).max(), abs=1e-6)
            same = family[(family.split == "test") & (family.beta == pick.beta) & (family.gamma == pick.gamma)
                          & (family.dims == pick.dims)]
            assert same.value.item() == pick.value
        chosen[name] = picks.set_index(["pooling", "method"])
        valid_rows = rows[rows.split == "valid"].set_index(["pooling", "method", "beta", "gamma", "dims"]).value
        chosen[name + "-valid"] = valid_rows.sort_index()
    # the test labels changed every test score, but not one valid score and not one choice
    pd.testing.assert_series_equal(chosen["real-valid"], chosen["flipped-valid"])
    settings = ["beta", "gamma", "dims", "best_valid_spearman"]
    pd.testing.assert_frame_equal(chosen["real"][settings].sort_index(), chosen["flipped"][settings].sort_index())
    assert (chosen["real"].value.astype(float) * chosen["flipped"].value.astype(float) < 0).any()
    grid = pd.read_csv(tmp_path / "real" / "grid.csv", dtype=str, keep_default_na=False)
    assert {"beta", "gamma"} <= set(grid.columns) and "whitening-chosen" in set(grid.method)


def test_choose_on_resumes_and_keeps_one_chosen_row_per_group(tiny_bert, sample_data_dir, tmp_path):
    common = ["--model", str(tiny_bert), "--pooling", "last-avg", "--dims", "full,8", *STUDY, "--choose-on", "valid",
              "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o")]
    assert run(*common).exit_code == 0
    again = run(*common)
    assert again.exit_code == 0 and "all 6 cells done" in again.output
    wider = run(*common, "--gamma", "0,0.5,1")  # a wider grid into the same folder: the choice may move
    assert wider.exit_code == 0, wider.output
    rows = pd.read_csv(tmp_path / "o" / "whiten.csv", dtype=str, keep_default_na=False)
    picks = rows[rows.method == "whitening-chosen"]
    assert len(picks) == 1
    assert picks.note.item() == "best valid spearman_cosine of 6 (beta, gamma, dims) settings"


@pytest.mark.parametrize("args, message", [
    (["--choose-on", "test"], "--choose-on test: is the --split"),
    (["--choose-on", "train", "--tasks", "PAWSX"], "--choose-on: PAWSX has no 'train' split"),
    (["--choose-on", "dev"], "--choose-on: 'dev' is not one of"),
    (["--beta", "0.5", "--methods", "pca"], "--beta / --gamma"),
    (["--gamma", "2"], "--gamma: 2.0 is outside [0, 1]"),
    (["--methods", "zca"], "--methods: zca"),
    (["--pooling", "layer-avg:0-3"], "--pooling layer-avg:3: "),  # the tiny BERT has 2 layers
])
def test_study_options_refuse_bad_values_before_encoding(tiny_bert, sample_data_dir, tmp_path, args, message):
    base = {"--model": str(tiny_bert), "--tasks": "STS-B", "--pooling": "cls", "--dims": "full",
            "--data-dir": str(sample_data_dir), "--out": str(tmp_path / "o")}
    extra = []
    for name, value in zip(args[::2], args[1::2], strict=True):
        if name in base:
            base[name] = value
        else:
            extra += [name, value]
    result = run(*[item for pair in base.items() for item in pair], *extra)
    assert result.exit_code == 2
    assert message in result.output.strip().splitlines()[-1]
    assert not (tmp_path / "o" / "whiten.csv").exists()


def test_layer_avg_rows_and_kernel_files_per_beta_gamma(tiny_bert, sample_data_dir, tmp_path):
    result = run("--model", str(tiny_bert), "--pooling", "layer-avg:0-2,last-avg", "--dims", "8", *STUDY,
                 "--beta", "0.5,1", "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o"),
                 "--save-kernel", str(tmp_path / "kernels"))
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "o" / "whiten.csv", dtype=str, keep_default_na=False)
    by_cell = rows.set_index(["pooling", "method", "beta"]).value
    for method, beta in (("raw", ""), ("whitening", "1"), ("whitening", "0.5")):
        assert by_cell["layer-avg:2", method, beta] == by_cell["last-avg", method, beta]  # layer 2 of 2 is the last
        assert by_cell["layer-avg:0", method, beta] != by_cell["layer-avg:1", method, beta]
    kernels = sorted(path.name.split("tiny-bert_")[1].rsplit("_", 1)[0]  # less the hash of the whole key
                     for path in (tmp_path / "kernels").glob("*last-avg*"))
    # beta = gamma = 1 keeps the name it had; other exponents are named
    assert kernels == ["last-avg_STS-B_fit-valid_8", "last-avg_STS-B_fit-valid_8_beta0.5_gamma1"]
    assert load_whitening(next((tmp_path / "kernels").glob("*last-avg*beta0.5*"))).beta == 0.5
    assert len(list((tmp_path / "kernels").glob("*layer-avg-0*"))) == 2
    grid = pd.read_csv(tmp_path / "o" / "grid.csv", dtype=str, keep_default_na=False)
    assert list(dict.fromkeys(grid.pooling)) == ["last-avg", "layer-avg:0", "layer-avg:1", "layer-avg:2"]


def test_simcse_train_refuses_layer_avg(tiny_bert, sample_data_dir, tmp_path):
    result = runner.invoke(app, ["simcse-train", "--model", str(tiny_bert), "--tasks", "STS-B", "--pooling",
                                 "layer-avg:1", "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "--pooling layer-avg:1: simcse-train does not train on layer-avg:N" in result.output


def _constant_test_labels(source, target):
    """A copy of the STS-B sample whose test labels are all 3: Spearman against them is undefined."""
    import shutil

    shutil.copytree(source, target)
    path = target / "STS-B" / "STS-B.test.data"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(f"{line.rsplit(chr(9), 1)[0]}\t3" for line in lines) + "\n", encoding="utf-8")
    return target


def test_constant_gold_labels_give_undefined_cells_that_say_why(tiny_bert, sample_data_dir, tmp_path):
    """issue 29, item 2: no `ok` row with an empty value; the status and note say why, the grid shows it."""
    data = _constant_test_labels(sample_data_dir, tmp_path / "constant")
    out = tmp_path / "out"
    args = ["--model", str(tiny_bert), "--pooling", "last-avg", "--dims", "full", "--tasks", "STS-B",
            "--fit-on", "valid", "--data-dir", str(data), "--out", str(out), "--bootstrap", "20"]
    first = run(*args)
    assert first.exit_code == 0, first.output
    rows = pd.read_csv(out / "whiten.csv", dtype=str, keep_default_na=False)
    assert rows.status.tolist() == ["undefined", "undefined"]
    assert (rows.value == "").all() and (rows.ci_low == "").all()
    assert rows.note.str.startswith("gold scores are constant (all 3) over 300 pairs").all()
    grid = pd.read_csv(out / "grid.csv", dtype=str, keep_default_na=False)
    assert grid["STS-B"].tolist() == ["undefined", "undefined"] and grid["avg"].tolist() == ["undefined"] * 2
    again = run(*args)  # the file reads back; the cells are finished (the labels will not change)
    assert again.exit_code == 0, again.output
    assert "all 2 cells done" in again.output


def test_kernels_of_cells_that_differ_only_in_prefix_do_not_overwrite_each_other(tiny_bert, sample_data_dir,
                                                                                 tmp_path):
    kernels = tmp_path / "kernels"
    args = ["--model", str(tiny_bert), "--pooling", "cls", "--dims", "8", "--tasks", "STS-B", "--fit-on", "valid",
            "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o"), "--bootstrap", "0",
            "--save-kernel", str(kernels)]
    assert run(*args, "--prefix", "query: ").exit_code == 0
    assert run(*args).exit_code == 0
    saved = {load_whitening(path).provenance["prefix"]: path for path in kernels.glob("*.npz")}
    assert set(saved) == {"query: ", ""}
    for prefix, path in saved.items():  # each file records the whole key it was fitted under
        assert load_whitening(path).provenance["kernel_key"]["prefix"] == prefix
    # a resumed run trusts no file whose recorded key is another cell's: the query kernel put in the
    # plain kernel's place is fitted again, and the file holds the plain cell's kernel once more
    plain = saved[""].read_bytes()
    saved[""].write_bytes(saved["query: "].read_bytes())
    again = run(*args)
    assert again.exit_code == 0, again.output
    assert "1 of 2 cells to compute (1 done but without their --save-kernel file)" in again.output
    assert load_whitening(saved[""]).provenance["kernel_key"]["prefix"] == ""
    assert saved[""].read_bytes() == plain
    assert "all 2 cells done" in run(*args).output


def test_a_full_disk_while_writing_results_is_one_line_and_keeps_the_finished_rows(
        tiny_bert, sample_data_dir, tmp_path, monkeypatch):
    import errno

    out = tmp_path / "out"
    real_to_csv, writes = pd.DataFrame.to_csv, []

    def full_on_second_results_write(frame, path, *args, **kwargs):
        if ".whiten.csv." in str(path):
            writes.append(path)
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_to_csv(frame, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_on_second_results_write)
    result = run("--model", str(tiny_bert), "--pooling", "cls", "--dims", "full", "--tasks", "STS-B,PAWSX",
                 "--fit-on", "test", "--data-dir", str(sample_data_dir), "--out", str(out), "--bootstrap", "0")
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()[-1]
    assert message.startswith(f"stseval: {out / 'whiten.csv'}: cannot write it (no space left on the device); ")
    assert "run the same command again to resume" in message
    rows = pd.read_csv(out / "whiten.csv", keep_default_na=False)
    assert set(rows.task) == {"STS-B"} and len(rows) == 2  # the first task's rows are intact
    assert not [path for path in out.iterdir() if path.name.endswith(".tmp")]  # no temp file left


def test_threads_are_recorded_in_each_row_but_not_in_its_cell_key(tiny_bert, sample_data_dir, tmp_path):
    import torch

    from stseval.runs.results import CELL_KEY

    before = torch.get_num_threads()
    result = run("--model", str(tiny_bert), "--pooling", "cls", "--dims", "8", "--tasks", "STS-B", "--fit-on", "test",
                 "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "out"), "--bootstrap", "0",
                 "--threads", "1")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "out" / "whiten.csv", keep_default_na=False, dtype=str)
    assert set(rows.torch_threads) == {"1"} and "torch_threads" not in CELL_KEY
    assert torch.get_num_threads() == before  # pinned for the run only


def test_default_poolings_are_the_ones_the_model_has(tiny_bert, sample_data_dir, tmp_path):
    """Without --pooling a model without a trained pooler gets no (always n/a) pooler cells."""
    result = run("--model", str(tiny_bert), "--dims", "full", "--tasks", "STS-B", "--fit-on", "test",
                 "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o"), "--bootstrap", "0")
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(tmp_path / "o" / "whiten.csv", keep_default_na=False)
    assert list(dict.fromkeys(rows.pooling)) == ["cls", "last-avg", "first-last-avg"]
    assert (rows.status == "ok").all()
    assert "--pooling cls,last-avg,first-last-avg (the default poolings this model has)" in result.output


def test_named_pooler_still_gives_na_on_a_model_without_one(tiny_bert, sample_data_dir, tmp_path):
    rows = whiten_rows(tmp_path / "o", "--model", str(tiny_bert), "--pooling", "cls,pooler", "--dims", "full",
                       "--tasks", "STS-B", "--fit-on", "test", "--data-dir", str(sample_data_dir), "--bootstrap", "0")
    assert set(rows.loc[rows.pooling == "pooler", "status"]) == {"n/a"}


def test_whiten_says_how_many_sentences_it_encodes_first(tiny_bert, sample_data_dir, tmp_path):
    """--fit-on task:BQ encodes BQ's splits too: the line before the run names them and the count."""
    from stseval.data.tasks import TASKS, load_pairs

    def distinct(task, splits):
        return len({text for split in splits for pair in load_pairs(TASKS[task], split, sample_data_dir)
                    for text in (pair.sentence1, pair.sentence2)})

    args = ["--model", str(tiny_bert), "--pooling", "cls", "--dims", "full", "--tasks", "STS-B", "--fit-on", "test",
            "--fit-on", "task:BQ", "--data-dir", str(sample_data_dir), "--out", str(tmp_path / "o"), "--bootstrap", "0"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    own, bq = distinct("STS-B", ["test"]), distinct("BQ", ["train", "valid", "test"])
    line = next(line for line in result.output.splitlines() if "sentences to encode" in line)
    assert f"about {own + bq:,} sentences to encode (STS-B test {own:,}; --fit-on task:BQ: BQ train+valid+test " \
           f"{bq:,})" in line
    assert line.index("sentences to encode") < result.output.index("cells to compute")  # said before the work
    again = run(*args)
    assert "nothing to encode, every cell is done" in again.output
