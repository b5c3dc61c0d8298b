"""The SimCSE queue (stseval/runs/simcse.py) on a tiny random BERT and a synthetic STS-B folder: scores before and
after training, skips finished cells, refuses bad options before training.

The training itself is tested per module: tests/test_simcse_{settings,sentences,model,loss,batching,loop,
checkpoints,distributed}.py. The tiny model (tests/tiny_models.py with 3 layers; hidden 32) and the data
are seeded, so these tests need neither downloads nor the shared data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stseval.common.errors import StsevalError
from stseval.methods.simcse.run_folder import SETTINGS_FILE
from stseval.runs.results import read_rows

pytestmark = pytest.mark.usefixtures("pinned_torch")  # one torch thread: two CPU cores are shared with other work


def _queue_options(simcse_bert: Path, sts_b_dir: Path, tmp_path: Path, **overrides) -> dict:
    options = dict(model=str(simcse_bert), tasks=["STS-B"], poolings=["cls"], dropouts=[0.1], batch_size=16,
                   learning_rate=1e-3, data_dir=sts_b_dir, out=tmp_path / "results",
                   runs_dir=tmp_path / "runs", n_resamples=0, device="cpu", show_progress=False, log=lambda line: None)
    options.update(overrides)
    return options


def _run_queue(log=lambda line: None, **options):
    """specs.parse_simcse_run + simcse.run_simcse, as the CLI calls them; the curves drawn as the CLI does."""
    from stseval.report.drawing import write_curve_plots
    from stseval.runs import simcse as simcse_run
    from stseval.runs.specs import parse_simcse_run

    output = simcse_run.run_simcse(parse_simcse_run(**options), log=log)
    write_curve_plots(output.curves)
    return output.results


def test_queue_scores_before_and_after_and_skips_finished_cells(simcse_bert, sts_b_dir, tmp_path, monkeypatch):
    from stseval.runs import simcse as simcse_run

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    options = _queue_options(simcse_bert, sts_b_dir, tmp_path, then_whiten=True)
    out_csv = _run_queue(**options)
    rows = pd.read_csv(out_csv, dtype=str, keep_default_na=False)
    assert list(zip(rows["method"], rows["metric"], strict=True)) == [
        ("raw", "spearman_cosine"), ("simcse", "spearman_cosine"), ("simcse", "spearman_cosine_minus_raw"),
        ("simcse-best-valid", "spearman_cosine"), ("simcse-best-valid", "spearman_cosine_minus_raw"),
        ("simcse+whitening", "spearman_cosine"), ("simcse+whitening", "spearman_cosine_minus_simcse")]
    trained = rows[rows["method"] != "raw"]
    assert set(trained["train_on"]) == {"valid+test (96 of 96 sentences)"}
    assert set(trained["dropout"]) == {"0.1"} and set(rows["n_pairs"]) == {"24"}
    assert set(trained["loss"]) == {"su"} and set(trained["batch_size"]) == {"16"} and set(trained["epochs"]) == {"1"}
    assert all(-1 <= float(value) <= 1 for value in rows["value"]) and all(rows["machine"])
    value = {(method, metric): float(v)
             for method, metric, v in zip(rows["method"], rows["metric"], rows["value"], strict=True)}
    assert value["simcse", "spearman_cosine_minus_raw"] == pytest.approx(
        value["simcse", "spearman_cosine"] - value["raw", "spearman_cosine"], abs=1e-5)
    assert value["simcse+whitening", "spearman_cosine_minus_simcse"] == pytest.approx(
        value["simcse+whitening", "spearman_cosine"] - value["simcse", "spearman_cosine"], abs=1e-5)
    best = trained[trained["method"] == "simcse-best-valid"].iloc[0]
    assert best["chosen_on"] == "valid" and int(best["best_step"]) >= 0
    assert -1 <= float(best["best_valid_spearman"]) <= 1
    run_dir = tmp_path / "runs" / "simcse" / f"{simcse_bert.name}-STS-B-cls-d0.1-s0-b16-lr0.001"
    assert set(trained["run_dir"]) == {str(run_dir)}
    assert set(trained["train_steps"]) == {"6"} and set(rows["max_length"]) == {"64"}
    whitened = trained[trained["method"] == "simcse+whitening"]
    assert set(whitened["n_fit"]) == {"96"} and set(whitened["beta"]) == set(whitened["gamma"]) == {"1"}
    # the fit's rank is recorded (0 would say "not whitened"): 31, as LayerNorm outputs (CLS) satisfy one linear
    # equation, sum_i (y_i - b_i) / g_i = 0; float32 rounding across it stays far below the 1e-10 eigenvalue floor
    assert set(whitened["fit_rank"]) == {"31"}
    assert set(rows.loc[rows["method"] != "simcse+whitening", "beta"]) == {""}
    stem = f"{simcse_bert.name}-STS-B-cls-d0.1-s0-b16-lr0.001"  # settings other than Su's are in the name
    curve = pd.read_csv(tmp_path / "results" / "curves" / f"{stem}.csv")
    assert list(curve["step"]) == [0, 6]  # before training and at the end (every 20 steps: never, 6 steps)
    assert (tmp_path / "results" / "curves" / f"{stem}.png").stat().st_size > 1000

    run_dir = tmp_path / "runs" / "simcse" / f"{simcse_bert.name}-STS-B-cls-d0.1-s0-b16-lr0.001"
    # --keep best (the default): the best-on-valid model stays, the final one is deleted once scored
    assert (run_dir / SETTINGS_FILE).is_file() and (run_dir / "best-valid" / "model.safetensors").is_file()
    assert not (run_dir / "model.safetensors").exists() and json.loads((run_dir / SETTINGS_FILE).read_text())[
        "kept"] == ["best"]

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(simcse_run, "train_simcse", must_not_train)
    lines: list[str] = []
    _run_queue(**dict(options, log=lines.append))
    assert any(line.endswith("done, skipping") for line in lines)
    pd.testing.assert_frame_equal(pd.read_csv(out_csv, dtype=str, keep_default_na=False), rows)
    # every setting that changes the trained weights is part of the cell key: these train again
    trained_again: list[dict] = []
    monkeypatch.setattr(simcse_run, "train_simcse", lambda *args, **kwargs: trained_again.append(kwargs)
                        or (_ for _ in ()).throw(KeyboardInterrupt))
    for changed in ({"seed": 1}, {"learning_rate": 2e-3}, {"loss": "princeton"}, {"batch_size": 8}, {"epochs": 2}):
        trained_again.clear()
        with pytest.raises(KeyboardInterrupt):
            _run_queue(**dict(options, **changed))
        assert trained_again, changed


def test_a_legacy_results_file_of_the_long_job_resumes_without_training(simcse_bert, sts_b_dir, tmp_path, monkeypatch):
    """results/simcse_su/simcse.csv keeps getting rows from a run of the old code: new code skips them."""
    from legacy_results import SIMCSE_KEYS, write_legacy
    from stseval.runs import simcse as simcse_run

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    options = _queue_options(simcse_bert, sts_b_dir, tmp_path, then_whiten=True)
    out_csv = _run_queue(**options)
    current = write_legacy(out_csv, SIMCSE_KEYS)
    legacy_bytes = out_csv.read_bytes()
    monkeypatch.setattr(simcse_run, "train_simcse", lambda *args, **kwargs: pytest.fail("a finished cell was trained"))
    lines: list[str] = []
    _run_queue(**dict(options, log=lines.append))
    assert sum(line.endswith("done, skipping") for line in lines) == 2  # the raw cell and the trained cell
    assert out_csv.read_bytes() == legacy_bytes  # nothing computed, nothing written
    described = ["method", "run_dir", "trained_fingerprint", "train_steps", "chosen_on", "best_step", "n_fit", "beta"]
    assert read_rows(out_csv)[described].astype(str).equals(current[described])  # extra read back into columns


@pytest.mark.parametrize(
    ("overrides", "option"),
    [({"dropouts": [1.0]}, "--dropout"), ({"dropouts": "0.1,x"}, "--dropout"), ({"tasks": ["NOPE"]}, "--tasks"),
     ({"poolings": ["avg"]}, "--pooling"), ({"loss": "x"}, "--loss"), ({"train_on": "train"}, "--train-on"),
     ({"max_sentences": "1"}, "--max-sentences"), ({"split": "train"}, "--split")],
)
def test_queue_rejects_bad_options_before_training(simcse_bert, sts_b_dir, tmp_path, monkeypatch, overrides, option):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    with pytest.raises(StsevalError, match=f"^{option}"):
        _run_queue(**_queue_options(simcse_bert, sts_b_dir, tmp_path, **overrides))


def test_queue_rejects_empty_training_file_and_unwritable_folders(simcse_bert, sts_b_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    a_file = tmp_path / "a-file"
    a_file.write_text("", encoding="utf-8")
    for overrides, option in (({"train_on": str(blank)}, "--train-on"),
                              ({"out": a_file}, "--out"),
                              ({"runs_dir": a_file}, "--runs-dir")):
        with pytest.raises(StsevalError, match=f"^{option}"):
            _run_queue(**_queue_options(simcse_bert, sts_b_dir, tmp_path, **overrides))


def test_sentence_vector_encoders_are_refused_before_training(sts_b_dir, tmp_path, monkeypatch):
    """SimCSE fine-tunes a transformer: a vectors:DIR model is refused in one line naming --model."""
    from typer.testing import CliRunner

    from stseval.cli import app
    from stseval.encoders.vectors import write_vectors_dir

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    sentences = [line.split("\t")[0] for line in (sts_b_dir / "STS-B" / "STS-B.test.data").read_text().splitlines()]
    folder = tmp_path / "api-vectors"
    write_vectors_dir(folder, "api-model", sentences, np.random.default_rng(0).normal(size=(len(sentences), 8)))
    result = CliRunner().invoke(app, [
        "simcse-train", "--model", f"vectors:{folder}", "--tasks", "STS-B", "--pooling", "cls", "--device", "cpu",
        "--data-dir", str(sts_b_dir), "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a one-line error, not a traceback
    assert result.output.splitlines()[-1] == (f"stseval: simcse-train needs a transformer model folder; "
                                              f"--model vectors:{folder} gives sentence vectors only")
    assert not (tmp_path / "out" / "simcse.csv").exists()
    assert not list((tmp_path / "runs").glob(f"simcse/*/{SETTINGS_FILE}"))  # nothing was trained


def test_queue_scores_step_0_once_prints_x100_and_keeps_what_keep_asks(simcse_bert, sts_b_dir, tmp_path, monkeypatch):
    """Two dropouts share the untrained model's curve point; the log prints Spearman x 100 as the grids do;
    --keep decides which trained models stay on disk, and a folder missing one is trained again, not reused."""
    from stseval.evaluation.validation import ValidationPairs
    from stseval.runs import simcse as simcse_run

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    real, calls = ValidationPairs.__call__, []  # every scoring of the validation pairs goes through here
    monkeypatch.setattr(ValidationPairs, "__call__", lambda *a, **k: calls.append(1) or real(*a, **k))
    lines: list[str] = []
    options = _queue_options(simcse_bert, sts_b_dir, tmp_path, dropouts=[0.1, 0.3], keep="none")
    out_csv = _run_queue(**dict(options, log=lines.append))
    assert len(calls) == 3  # 6 steps, a point every 20: step 0 once for both dropouts, then each run's last step
    assert "simcse-train: 2 model(s) to train, 12 steps of 16 sentences in all" in lines[0]  # before any work
    stems = [f"{simcse_bert.name}-STS-B-cls-d{rate}-s0-b16-lr0.001" for rate in ("0.1", "0.3")]
    curves = [pd.read_csv(tmp_path / "results" / "curves" / f"{stem}.csv") for stem in stems]
    assert curves[0].iloc[0, 2] == curves[1].iloc[0, 2] and list(curves[0]["step"]) == [0, 6]
    rows = pd.read_csv(out_csv, dtype=str, keep_default_na=False)
    simcse = rows[(rows["method"] == "simcse") & (rows["metric"] == "spearman_cosine") & (rows["dropout"] == "0.1")]
    printed = [line for line in lines if "dropout=0.1" in line and "spearman x 100" in line]
    assert len(printed) == 1 and f"spearman x 100 {100 * float(simcse['value'].item()):.2f} (" in printed[0]
    for stem in stems:  # --keep none: the card, the curve and the settings only
        folder = tmp_path / "runs" / "simcse" / stem
        assert sorted(path.name for path in folder.iterdir()) == ["README.md", "curve.csv", SETTINGS_FILE]
    # a new --out needs the deleted models: it trains again, keeping both this time
    trained_again: list[str] = []
    real_train = simcse_run.train_simcse
    monkeypatch.setattr(simcse_run, "train_simcse", lambda *a, **k: trained_again.append(1) or real_train(*a, **k))
    _run_queue(**dict(options, out=tmp_path / "again", dropouts=[0.1], keep="both"))
    folder = tmp_path / "runs" / "simcse" / stems[0]
    assert trained_again == [1] and (folder / "model.safetensors").is_file()
    assert (folder / "best-valid" / "model.safetensors").is_file()
