"""CoSENT training (stseval/methods/cosent.py) on a tiny random BERT and seeded labelled pairs (see `_pairs`)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers.sentence_transformer.losses import CoSENTLoss

from stseval.common.errors import StsevalError
from stseval.common.settings import Pooling
from stseval.evaluation.metrics import spearman_cosine
from stseval.evaluation.validation import ValidationPairs
from stseval.methods.cosent import CosentSettings, train_cosent
from stseval.methods.simcse.checkpoints import CHECKPOINT_DIR
from stseval.methods.simcse.run_folder import BEST_VALID_DIR, LEGACY_SETTINGS_FILE, SETTINGS_FILE
from tiny_models import make_bert
from training_helpers import CHARS, free_port, stop_at

pytestmark = pytest.mark.usefixtures("pinned_torch")  # one torch thread: two CPU cores are shared with other work


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return make_bert(tmp_path_factory.mktemp("tiny-bert"), num_hidden_layers=2)


def _pairs(n: int, seed: int) -> tuple[list[str], list[str], list[float]]:
    """n pairs of unrelated random sentences, each drawn from one of two halves of the vocabulary ("topics");
    label 1 when both sentences share a topic. A random encoder sees this only through shared characters."""
    chooser = random.Random(seed)
    topics = (CHARS[: len(CHARS) // 2], CHARS[len(CHARS) // 2:])

    def sentence(topic: int) -> str:
        return "".join(chooser.choice(topics[topic]) for _ in range(chooser.randint(5, 12)))

    texts_a, texts_b, gold = [], [], []
    for _ in range(n):
        topic_a, topic_b = chooser.randrange(2), chooser.randrange(2)
        texts_a.append(sentence(topic_a))
        texts_b.append(sentence(topic_b))
        gold.append(float(topic_a == topic_b))
    return texts_a, texts_b, gold


def _settings(**overrides) -> CosentSettings:
    values = dict(pooling=Pooling("cls"), batch_size=16, learning_rate=3e-3, epochs=4, max_length=32, seed=0,
                  checkpoint_steps=2)
    values.update(overrides)
    return CosentSettings(**values)


def test_loss_is_sentence_transformers_cosent_by_hand():
    """CoSENTLoss(scale 20) on a batch equals Su's formula log(1 + sum_{y_i > y_j} exp(20 (s_j - s_i)))."""
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(6, 8, generator=generator), torch.randn(6, 8, generator=generator)
    labels = torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0, 0.25])
    cosines = torch.nn.functional.cosine_similarity(first, second)
    terms = [20 * (cosines[j] - cosines[i]) for i in range(6) for j in range(6) if labels[i] > labels[j]]
    by_hand = torch.log(1 + torch.exp(torch.stack(terms)).sum())
    value = CoSENTLoss(model=None, scale=20.0).compute_loss_from_embeddings([first, second], labels)  # type: ignore[arg-type]
    torch.testing.assert_close(value, by_hand, rtol=1e-5, atol=1e-5)  # float32 sums of 12 terms


def test_training_lowers_the_loss_and_raises_valid_spearman(tiny_bert, tmp_path):
    texts_a, texts_b, gold = _pairs(96, seed=0)
    valid_a, valid_b, valid_gold = _pairs(64, seed=1)
    validation = ValidationPairs(valid_a, valid_b, valid_gold, every_steps=3)
    losses: list[float] = []
    trained = train_cosent(tiny_bert, texts_a, texts_b, gold, _settings(), tmp_path / "run", base_model="tiny",
                           card_facts={"task": "synthetic"}, show_progress=False, validation=validation,
                           on_step=lambda step, loss: losses.append(loss))
    assert trained.steps == 24 and len(losses) == 24
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.4
    assert trained.curve[-1]["valid_spearman"] > trained.curve[0]["valid_spearman"] + 0.2
    assert (tmp_path / "run" / SETTINGS_FILE).is_file() and not (tmp_path / "run" / CHECKPOINT_DIR).exists()
    card = (tmp_path / "run" / "README.md").read_text(encoding="utf-8")
    assert "CoSENT" in card and "synthetic" in card and "pairs_sha256" in card


def test_best_valid_folder_holds_the_checkpoint_that_scored_best(tiny_bert, tmp_path):
    """The folder chosen on valid gives, re-scored from disk, the valid Spearman the curve recorded at its step."""
    from stseval.encoders.encoder import encode, load_encoder

    texts_a, texts_b, gold = _pairs(96, seed=0)
    valid_a, valid_b, valid_gold = _pairs(64, seed=1)
    validation = ValidationPairs(valid_a, valid_b, valid_gold, every_steps=3)
    trained = train_cosent(tiny_bert, texts_a, texts_b, gold, _settings(), tmp_path / "run", show_progress=False,
                           validation=validation)
    points = [point for point in trained.curve if point["step"] > 0]
    best = max(points, key=lambda point: point["valid_spearman"])
    encoder = load_encoder(str(tmp_path / "run" / BEST_VALID_DIR))
    vectors_a = encode(encoder, valid_a, ["cls"], max_length=32, show_progress=False)["cls"]
    vectors_b = encode(encoder, valid_b, ["cls"], max_length=32, show_progress=False)["cls"]
    # float32 forward passes of the same weights, batched differently: cosines agree to ~1e-6, and a
    # Spearman over 64 pairs changes only if two cosines swap order, so the values agree to 1e-4
    assert spearman_cosine(vectors_a, vectors_b, np.asarray(valid_gold)) == pytest.approx(best["valid_spearman"],
                                                                                          abs=1e-4)


def test_interrupted_training_resumes_to_the_same_weights(tiny_bert, tmp_path):
    texts_a, texts_b, gold = _pairs(96, seed=0)
    settings = _settings(epochs=2)  # 6 steps an epoch, a checkpoint every 2
    with pytest.raises(KeyboardInterrupt):
        train_cosent(tiny_bert, texts_a, texts_b, gold, settings, tmp_path / "run", show_progress=False,
                     on_step=stop_at(9))
    assert (tmp_path / "run" / CHECKPOINT_DIR / "step-8" / "complete").is_file()
    resumed = train_cosent(tiny_bert, texts_a, texts_b, gold, settings, tmp_path / "run", show_progress=False)
    assert resumed.resumed_from == "step-8" and resumed.steps == 12
    straight = train_cosent(tiny_bert, texts_a, texts_b, gold, settings, tmp_path / "straight", show_progress=False)
    assert resumed.losses == straight.losses
    for (name, weight), (_, other) in zip(resumed.model.state_dict().items(), straight.model.state_dict().items(),
                                          strict=True):
        assert torch.equal(weight, other), name
    again = train_cosent(tiny_bert, texts_a, texts_b, gold, settings, tmp_path / "run", show_progress=False)
    assert again.reused
    # a folder finished before the settings file was renamed is still a finished run, not trained again
    (tmp_path / "run" / SETTINGS_FILE).rename(tmp_path / "run" / LEGACY_SETTINGS_FILE)
    assert train_cosent(tiny_bert, texts_a, texts_b, gold, settings, tmp_path / "run", show_progress=False).reused
    with pytest.raises(StsevalError, match="--runs-dir: .* learning_rate"):
        train_cosent(tiny_bert, texts_a, texts_b, gold, _settings(epochs=2, learning_rate=1e-4), tmp_path / "run")


def test_constant_labels_are_refused(tiny_bert, tmp_path):
    texts_a, texts_b, _ = _pairs(8, seed=0)
    with pytest.raises(StsevalError, match="every training label is 1"):
        train_cosent(tiny_bert, texts_a, texts_b, [1.0] * 8, _settings(), tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run").exists()


# --- the queue (stseval/runs/cosent.py) ------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """Synthetic STS-B (train 96 pairs, valid 48, test 48; labels 0/1 scaled to 0-5) and ATEC (valid, test)."""
    folder = tmp_path / "data"
    for task, splits in (("STS-B", ("train", "valid", "test")), ("ATEC", ("valid", "test"))):
        (folder / task).mkdir(parents=True)
        for seed, split in enumerate(splits):
            texts_a, texts_b, gold = _pairs(96 if split == "train" else 48, seed=seed + (10 if task == "ATEC" else 0))
            scale = 5 if task == "STS-B" else 1
            lines = [f"{a}\t{b}\t{int(g * scale)}\n" for a, b, g in zip(texts_a, texts_b, gold, strict=True)]
            (folder / task / f"{task}.{split}.data").write_text("".join(lines), encoding="utf-8")
    return folder


def _queue(tiny_bert: Path, data_dir: Path, tmp_path: Path, log=lambda line: None, **overrides):
    from stseval.runs.cosent import run_cosent
    from stseval.runs.specs import parse_cosent_run

    options = dict(model=str(tiny_bert), train_on="STS-B", tasks="STS-B,ATEC", poolings="cls", batch_size=16,
                   learning_rate=3e-3, epochs=2, eval_steps=3, data_dir=data_dir, out=tmp_path / "results",
                   runs_dir=tmp_path / "runs", n_resamples=0, device="cpu", show_progress=False, then_whiten=True)
    options.update(overrides)
    return run_cosent(parse_cosent_run(**options), log=log)


def test_queue_trains_once_scores_every_task_and_skips_finished_cells(tiny_bert, data_dir, tmp_path, monkeypatch):
    import pandas as pd

    from stseval.runs import cosent as cosent_run

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    output = _queue(tiny_bert, data_dir, tmp_path)
    rows = pd.read_csv(output.results, dtype=str, keep_default_na=False)
    trained = rows[rows["method"] != "raw"]
    assert set(trained["task"]) == {"STS-B", "ATEC"}  # one training, scored on both tasks
    run_dir = tmp_path / "runs" / "cosent" / f"{tiny_bert.name}-cosent-STS-B-cls-s0-b16-lr0.003-e2"
    assert set(trained["run_dir"]) == {str(run_dir)}
    assert len(set(trained["train_on"])) == 1
    assert trained["train_on"].iloc[0].startswith("STS-B:train (96 pairs, sha256 ")
    assert set(trained["method"]) == {"cosent", "cosent-best-valid", "cosent+whitening"}
    assert set(trained["loss"]) == {"cosent"} and set(trained["epochs"]) == {"2"} and set(trained["dropout"]) == {"0.1"}
    assert set(trained["train_steps"]) == {"12"}
    value = {(task, method, metric): float(v) for task, method, metric, v
             in zip(rows["task"], rows["method"], rows["metric"], rows["value"], strict=True)}
    for task in ("STS-B", "ATEC"):
        # the CSV holds each value rounded to 6 decimals: a difference of two of them is off by up to 1e-6
        assert value[task, "cosent", "spearman_cosine_minus_raw"] == pytest.approx(
            value[task, "cosent", "spearman_cosine"] - value[task, "raw", "spearman_cosine"], abs=2e-6)
        # the synthetic topic labels are learnable: training on STS-B's train pairs helps on both tasks
        assert value[task, "cosent-best-valid", "spearman_cosine_minus_raw"] > 0.1
    best = trained[trained["method"] == "cosent-best-valid"].iloc[0]
    assert best["chosen_on"] == "STS-B:valid" and int(best["best_step"]) > 0
    assert set(trained.loc[trained["method"] == "cosent+whitening", "n_fit"]) == {"192"}
    # the fit's rank is recorded (0 would say "not whitened"). CLS vectors leave a LayerNorm, so
    # sum_i (y_i - b_i) / g_i = 0 holds for every one: 31 of the tiny model's 32 directions have variance, and
    # float32 rounding across the last one (~1e-14 of the top eigenvalue) stays far below the 1e-10 floor
    assert set(trained.loc[trained["method"] == "cosent+whitening", "fit_rank"]) == {"31"}
    # each task's rows record the checksum of every split file it has, as whiten's and simcse-train's rows do,
    # so `report` puts CoSENT beside whitening and SimCSE instead of refusing them as other data
    from stseval.data.tasks import TASKS, available_splits, data_fingerprint

    for task in ("STS-B", "ATEC"):
        spec = TASKS[task]
        assert set(rows.loc[rows["task"] == task, "data_sha256"]) == {
            data_fingerprint(spec, available_splits(spec, data_dir), data_dir)}

    monkeypatch.setattr(cosent_run, "train_cosent", lambda *args, **kwargs: pytest.fail("a finished cell was trained"))
    lines: list[str] = []
    _queue(tiny_bert, data_dir, tmp_path, log=lines.append)
    assert sum(line.endswith("skipping") for line in lines) == 3  # raw STS-B, raw ATEC, the training


def test_a_task_without_train_split_is_refused_before_any_model_loads(tiny_bert, data_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stseval.cli import app
    from stseval.encoders import encoder as encoder_module

    monkeypatch.setattr(encoder_module, "load_encoder", lambda *a, **k: pytest.fail("a model was loaded"))
    result = CliRunner().invoke(app, ["cosent-train", "--model", str(tiny_bert), "--train-on", "ATEC",
                                      "--tasks", "ATEC", "--data-dir", str(data_dir), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    message = result.output.strip()
    assert "--train-on ATEC" in message and "valid, test" in message and "choose from STS-B" in message
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()


def test_a_bad_train_line_is_refused_with_file_and_line_before_any_model_loads(tiny_bert, data_dir, tmp_path,
                                                                               monkeypatch):
    from typer.testing import CliRunner

    from stseval.cli import app
    from stseval.encoders import encoder as encoder_module

    train = data_dir / "STS-B" / "STS-B.train.data"
    lines = train.read_text(encoding="utf-8").splitlines()
    lines[4] = lines[4].rsplit("\t", 1)[0] + "\t9"  # STS-B scores run 0-5
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setattr(encoder_module, "load_encoder", lambda *a, **k: pytest.fail("a model was loaded"))
    result = CliRunner().invoke(app, ["cosent-train", "--model", str(tiny_bert), "--train-on", "STS-B",
                                      "--tasks", "STS-B", "--data-dir", str(data_dir), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "STS-B.train.data:5" in result.output, result.output


def test_the_command_writes_rows_grid_and_a_curve_png_per_training(tiny_bert, data_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from stseval.cli import app

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["cosent-train", "--model", str(tiny_bert), "--train-on", "STS-B",
                                      "--tasks", "STS-B", "--pooling", "cls", "--epochs", "1", "--eval-steps", "3",
                                      "--batch-size", "16", "--bootstrap", "0", "--data-dir", str(data_dir),
                                      "--runs-dir", str(tmp_path / "runs"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "cosent.csv").is_file() and (out / "grid.md").is_file()
    [curve] = (out / "curves").glob("*.csv")
    assert curve.with_suffix(".png").is_file()  # the valid curve is drawn beside its CSV, as simcse-train does


def test_torchrun_two_processes_train_one_model_and_write_each_row_once(tiny_bert, data_dir, tmp_path):
    """cosent-train under torchrun (2 CPU processes, gloo): one run folder, each row written once by rank 0.

    CoSENT compares the pairs within a batch, so unlike SimCSE's gathered negatives two processes of 8 pairs
    are not one process of 16: only the step count and the single writer are asserted."""
    import os
    import subprocess
    import sys

    import pandas as pd

    env = dict(os.environ, STSEVAL_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(free_port())]
    options = {"--model": str(tiny_bert), "--train-on": "STS-B", "--tasks": "STS-B,ATEC", "--data-dir": str(data_dir),
               "--pooling": "cls", "--batch-size": "8", "--epochs": "1", "--bootstrap": "0", "--curve-pairs": "0",
               "--device": "cpu", "--out": str(tmp_path / "out"), "--runs-dir": str(tmp_path / "runs")}
    command = [*launcher, "-m", "stseval.cli", "cosent-train", *[part for item in options.items() for part in item]]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert len(list((tmp_path / "runs" / "cosent").glob(f"*/{SETTINGS_FILE}"))) == 1
    rows = pd.read_csv(tmp_path / "out" / "cosent.csv", dtype=str, keep_default_na=False)
    assert not rows.duplicated(["task", "pooling", "method", "metric"]).any()
    assert set(rows["task"]) == {"STS-B", "ATEC"} and set(rows["status"]) == {"ok"}
    trained = rows[rows["method"] != "raw"]
    assert set(trained["train_steps"]) == {"6"}  # 96 pairs / (8 pairs x 2 processes)


def test_rows_count_the_training_time_once(tiny_bert, data_dir, tmp_path, monkeypatch):
    # a clock that jumps a day while the model trains, and a training that records that day: seconds must be
    # the day plus the scoring (minutes at most), not two days (the training once as recorded, once as timed)
    import dataclasses
    import time as real_time
    import types

    import pandas as pd

    from stseval.runs import cosent as cosent_run

    day, offset = 86400.0, [0.0]
    monkeypatch.setattr(cosent_run, "time", types.SimpleNamespace(perf_counter=lambda: real_time.perf_counter()
                                                                  + offset[0]))
    real_train = cosent_run.train_cosent

    def day_long_training(*args, **kwargs):
        trained = real_train(*args, **kwargs)
        offset[0] += day
        return dataclasses.replace(trained, train_seconds=day)

    monkeypatch.setattr(cosent_run, "train_cosent", day_long_training)
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    rows = pd.read_csv(_queue(tiny_bert, data_dir, tmp_path, tasks="STS-B", then_whiten=False).results)
    seconds = rows.loc[rows["method"] != "raw", "seconds"]
    assert len(seconds) and ((seconds >= day) & (seconds < 1.5 * day)).all()
