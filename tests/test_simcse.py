"""SimCSE training (stseval/methods/simcse.py) and its queue (stseval/runs/simcse.py) on a tiny random BERT.

The tiny model (tests/tiny_models.py with 3 layers, so first-last-avg and last2avg differ; hidden 32)
and the sentences are seeded, so these tests need neither downloads nor the shared data.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stseval.common.errors import StsevalError
from stseval.encoders.pooling import POOLINGS, pool
from stseval.methods.simcse import (
    CHECKPOINT_DIR,
    SETTINGS_FILE,
    SimcseSettings,
    build_loss,
    build_simcse_model,
    select_sentences,
    train_simcse,
)
from stseval.runs.results import read_rows
from tiny_models import VOCAB, make_bert

CHARS = "".join(token for token in VOCAB if len(token) == 1 and not token.isascii())  # the tiny vocab's Chinese
N_LAYERS = 3


@pytest.fixture(autouse=True)
def _few_threads():
    """Two CPU cores are shared with other work: keep torch to one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    """A seeded 3-layer BertModel (hidden 32, with pooler) and its character tokenizer, saved to a folder."""
    return make_bert(tmp_path_factory.mktemp("tiny-bert"), num_hidden_layers=N_LAYERS)


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    """64 seeded random sentences of 4-16 characters over the tiny vocabulary."""
    chooser = random.Random(0)
    return ["".join(chooser.choice(CHARS) for _ in range(chooser.randint(4, 16))) for _ in range(64)]


def _settings(**overrides) -> SimcseSettings:
    """Settings that make a tiny model learn in a few steps."""
    values = dict(pooling="cls", dropout=0.1, batch_size=16, learning_rate=1e-3, epochs=1, max_length=32, seed=0)
    values.update(overrides)
    return SimcseSettings(**values)


def _forward(model, texts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return model(model.preprocess(texts))["sentence_embedding"]


# --- dropout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dropout", [0.1, 0.3, 0.0])
def test_dropout_is_set_everywhere_and_acts_only_in_train_mode(tiny_bert, sentences, dropout, pinned_torch):
    model = build_simcse_model(tiny_bert, "last-avg", dropout, max_length=32)
    config = model[0].auto_model.config
    assert config.hidden_dropout_prob == dropout and config.attention_probs_dropout_prob == dropout
    probabilities = [module.p for module in model.modules() if isinstance(module, nn.Dropout)]
    assert len(probabilities) >= 1 + 3 * N_LAYERS  # embeddings, and attention + 2 hidden per layer
    assert set(probabilities) == {dropout}

    model.train()
    first, second = _forward(model, sentences[:8]), _forward(model, sentences[:8])
    if dropout:
        assert not torch.allclose(first, second)
    else:
        torch.testing.assert_close(first, second, rtol=0, atol=0)
    model.eval()
    torch.testing.assert_close(_forward(model, sentences[:8]), _forward(model, sentences[:8]), rtol=0, atol=0)


def test_attention_dropout_alone_makes_passes_differ(tiny_bert, sentences):
    """BERT's attention reads its rate from nn.Dropout.p: setting it must reach SDPA too."""
    model = build_simcse_model(tiny_bert, "cls", 0.3, max_length=32)
    for name, module in model.named_modules():
        if isinstance(module, nn.Dropout) and not name.endswith("attention.self.dropout"):
            module.p = 0.0
    model.train()
    assert not torch.allclose(_forward(model, sentences[:8]), _forward(model, sentences[:8]))


# --- loss ---------------------------------------------------------------------------------------


def _su_rows_by_hand(copy_one: torch.Tensor, copy_two: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """Su's bojone/SimCSE `simcse_loss`, per row: batch interleaved [x0, x0', x1, x1', ...], target = partner."""
    batch = torch.stack([copy_one, copy_two], dim=1).reshape(-1, copy_one.shape[1])  # (2B, d)
    batch = F.normalize(batch, dim=1)
    similarities = batch @ batch.T - torch.eye(len(batch)) * 1e12  # a row never matches itself
    partner = torch.arange(len(batch)) ^ 1  # 0<->1, 2<->3, ...
    return F.cross_entropy(similarities * scale, partner, reduction="none")


def test_su_loss_equals_su_formula_by_hand(tiny_bert):
    generator = torch.Generator().manual_seed(0)
    copy_one, copy_two = torch.randn(6, 8, generator=generator), torch.randn(6, 8, generator=generator)
    loss = build_loss(build_simcse_model(tiny_bert, "cls", 0.1, 32), "su")
    rows = _su_rows_by_hand(copy_one, copy_two)

    ours = loss.compute_loss_from_embeddings([copy_one, copy_two], None)
    torch.testing.assert_close(ours, rows[0::2].mean())  # Su's rows anchored on copy one
    mirrored = loss.compute_loss_from_embeddings([copy_two, copy_one], None)
    torch.testing.assert_close((ours + mirrored) / 2, rows.mean())  # Su's whole loss


def test_princeton_loss_is_plain_info_nce(tiny_bert):
    generator = torch.Generator().manual_seed(1)
    copy_one, copy_two = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    loss = build_loss(build_simcse_model(tiny_bert, "cls", 0.1, 32), "princeton")
    cosine = F.normalize(copy_one, dim=1) @ F.normalize(copy_two, dim=1).T
    by_hand = F.cross_entropy(cosine / 0.05, torch.arange(5))
    torch.testing.assert_close(loss.compute_loss_from_embeddings([copy_one, copy_two], None), by_hand)


def test_one_step_of_each_loss_on_the_model_matches_the_formula(tiny_bert, sentences):
    """Through the model (dropout 0, so both copies are equal): su and cached give Su's number."""
    model = build_simcse_model(tiny_bert, "first-last-avg", 0.0, max_length=32)
    texts = sentences[:8]
    embeddings = _forward(model, texts)
    by_hand = _su_rows_by_hand(embeddings, embeddings).mean()
    for name in ("su", "cached"):
        loss = build_loss(model, name, mini_batch_size=3)
        value = loss([model.preprocess(texts), model.preprocess(texts)], None)
        torch.testing.assert_close(value.detach(), by_hand, rtol=1e-5, atol=1e-5)


# --- training -----------------------------------------------------------------------------------


def test_training_lowers_the_loss_and_writes_a_loadable_folder(tiny_bert, sentences, tmp_path):
    losses: list[float] = []
    trained = train_simcse(tiny_bert, sentences, _settings(epochs=4), tmp_path / "run", base_model="tiny",
                           card_facts={"task": "synthetic"}, show_progress=False,
                           on_step=lambda step, loss: losses.append(loss))
    assert trained.steps == 16 and len(losses) == 16 and trained.losses == losses
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.2
    assert (tmp_path / "run" / SETTINGS_FILE).is_file() and not (tmp_path / "run" / CHECKPOINT_DIR).exists()
    card = (tmp_path / "run" / "README.md").read_text(encoding="utf-8")
    assert "dropout" in card and "synthetic" in card and "sentences_sha256" in card
    assert not trained.model.training


def test_same_seed_gives_same_vectors(tiny_bert, sentences, tmp_path):
    def vectors(seed: int, folder: str) -> np.ndarray:
        trained = train_simcse(tiny_bert, sentences, _settings(seed=seed), tmp_path / folder, show_progress=False)
        return trained.model.encode(sentences, convert_to_numpy=True)

    first = vectors(0, "a")
    np.testing.assert_allclose(vectors(0, "b"), first, rtol=0, atol=1e-6)
    assert not np.allclose(vectors(1, "c"), first, atol=1e-4)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_saved_folder_gives_the_same_vectors_everywhere(tiny_bert, sentences, tmp_path, pooling):
    """In memory, reloaded by sentence-transformers, via stseval.encoders.encoder, and by
    stseval.encoders.pooling.pool."""
    from sentence_transformers import SentenceTransformer
    from transformers import BertModel

    from stseval.encoders.encoder import encode, load_encoder

    trained = train_simcse(tiny_bert, sentences, _settings(pooling=pooling), tmp_path / "run", show_progress=False)
    before_saving = trained.model.encode(sentences, convert_to_numpy=True)
    reloaded = SentenceTransformer(str(tmp_path / "run"), device="cpu").encode(sentences, convert_to_numpy=True)
    via_stseval = encode(load_encoder(str(tmp_path / "run")), sentences, [pooling], max_length=32,
                         show_progress=False)[pooling]
    backbone = BertModel.from_pretrained(tmp_path / "run").eval()
    batch = trained.model.tokenizer(sentences, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        hidden = backbone(**batch, output_hidden_states=True).hidden_states
        by_definition = pool(pooling, hidden, batch["attention_mask"], backbone.pooler.dense).numpy()
    for other in (reloaded, via_stseval, by_definition):
        np.testing.assert_allclose(other, before_saving, rtol=0, atol=2e-5)


def _stop_at(step_to_stop: int):
    def on_step(step: int, loss: float) -> None:
        if step == step_to_stop:
            raise KeyboardInterrupt
    return on_step


def test_interrupted_training_resumes_to_the_same_weights(tiny_bert, sentences, tmp_path, pinned_torch):
    settings = _settings(checkpoint_steps=2, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train_simcse(tiny_bert, sentences, settings, tmp_path / "run", show_progress=False, on_step=_stop_at(7))
    assert (tmp_path / "run" / CHECKPOINT_DIR / "step-6" / "complete").is_file()
    assert not (tmp_path / "run" / SETTINGS_FILE).exists()

    resumed = train_simcse(tiny_bert, sentences, settings, tmp_path / "run", show_progress=False)
    assert resumed.resumed_from == "step-6" and resumed.steps == 8
    straight = train_simcse(tiny_bert, sentences, settings, tmp_path / "straight", show_progress=False)
    assert resumed.losses == straight.losses  # every step, the 6 before the interruption included
    for (name, weight), (_, other) in zip(resumed.model.state_dict().items(), straight.model.state_dict().items(),
                                          strict=True):
        assert torch.equal(weight, other), name

    again = train_simcse(tiny_bert, sentences, settings, tmp_path / "run", show_progress=False)
    assert again.reused and again.steps == 8
    with pytest.raises(StsevalError, match="--runs-dir: .* dropout=0.1, not 0.3"):
        train_simcse(tiny_bert, sentences, _settings(checkpoint_steps=2, epochs=2, dropout=0.3), tmp_path / "run")


def test_a_truncated_newest_checkpoint_falls_back_to_the_one_before(tiny_bert, sentences, tmp_path, capsys):
    settings = _settings(checkpoint_steps=2, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train_simcse(tiny_bert, sentences, settings, tmp_path / "run", show_progress=False, on_step=_stop_at(7))
    newest = tmp_path / "run" / CHECKPOINT_DIR / "step-6"
    (newest / "trainer.pt").write_bytes((newest / "trainer.pt").read_bytes()[:100])
    resumed = train_simcse(tiny_bert, sentences, settings, tmp_path / "run", show_progress=False)
    assert resumed.resumed_from == "step-4" and resumed.steps == 8
    assert "step-6 does not load" in capsys.readouterr().err
    straight = train_simcse(tiny_bert, sentences, settings, tmp_path / "straight", show_progress=False)
    assert resumed.losses == straight.losses


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "option"),
    [({"dropout": 1.0}, "--dropout"), ({"dropout": -0.1}, "--dropout"), ({"pooling": "mean"}, "--pooling"),
     ({"loss": "triplet"}, "--loss"), ({"batch_size": 1}, "--batch-size"), ({"learning_rate": 0.0}, "--lr")],
)
def test_bad_settings_name_their_option(overrides, option):
    with pytest.raises(StsevalError, match=f"^{option}"):
        _settings(**overrides).validate()


def test_pooler_pooling_needs_trained_pooler_weights(tmp_path):
    folder = make_bert(tmp_path / "bert", with_pooler=False)
    with pytest.raises(StsevalError, match="^--pooling pooler: .* no trained pooler"):
        build_simcse_model(folder, "pooler", 0.1, max_length=32)
    assert build_simcse_model(folder, "cls", 0.1, max_length=32) is not None


def test_sentence_selection_is_seeded_capped_and_keeps_duplicates():
    sentences = [f"s{i % 50}" for i in range(100)]  # every sentence twice
    chosen = select_sentences(sentences, 30, seed=0)
    assert chosen == select_sentences(sentences, 30, seed=0) != select_sentences(sentences, 30, seed=1)
    assert len(chosen) == 30 and sorted(select_sentences(sentences, None, seed=0)) == sorted(sentences)
    with pytest.raises(StsevalError, match="^--train-on"):
        select_sentences([], None, seed=0)
    with pytest.raises(StsevalError, match="^--max-sentences"):
        select_sentences(sentences, 1, seed=0)


# --- the queue ----------------------------------------------------------------------------------


@pytest.fixture
def sts_b_dir(tmp_path) -> Path:
    """A synthetic STS-B data folder (valid and test, 24 pairs each, scores 0-5); no train split."""
    chooser = random.Random(1)
    folder = tmp_path / "data"
    (folder / "STS-B").mkdir(parents=True)
    for split in ("valid", "test"):
        lines = []
        for row in range(24):
            first = "".join(chooser.choice(CHARS) for _ in range(chooser.randint(4, 12)))
            second = first[: chooser.randint(2, len(first))] + chooser.choice(CHARS)
            lines.append(f"{first}\t{second}\t{row % 6}\n")
        (folder / "STS-B" / f"STS-B.{split}.data").write_text("".join(lines), encoding="utf-8")
    return folder


def _queue_options(tiny_bert: Path, sts_b_dir: Path, tmp_path: Path, **overrides) -> dict:
    options = dict(model=str(tiny_bert), tasks=["STS-B"], poolings=["cls"], dropouts=[0.1], batch_size=16,
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


def test_queue_scores_before_and_after_and_skips_finished_cells(tiny_bert, sts_b_dir, tmp_path, monkeypatch):
    from stseval.runs import simcse as simcse_run

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    options = _queue_options(tiny_bert, sts_b_dir, tmp_path, then_whiten=True)
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
    run_dir = tmp_path / "runs" / "simcse" / f"{tiny_bert.name}-STS-B-cls-d0.1-s0-b16-lr0.001"
    assert set(trained["run_dir"]) == {str(run_dir)}
    assert set(trained["train_steps"]) == {"6"} and set(rows["max_length"]) == {"64"}
    whitened = trained[trained["method"] == "simcse+whitening"]
    assert set(whitened["n_fit"]) == {"96"} and set(whitened["beta"]) == set(whitened["gamma"]) == {"1"}
    assert set(rows.loc[rows["method"] != "simcse+whitening", "beta"]) == {""}
    stem = f"{tiny_bert.name}-STS-B-cls-d0.1-s0-b16-lr0.001"  # settings other than Su's are in the name
    curve = pd.read_csv(tmp_path / "results" / "curves" / f"{stem}.csv")
    assert list(curve["step"]) == [0, 6]  # before training and at the end (every 20 steps: never, 6 steps)
    assert (tmp_path / "results" / "curves" / f"{stem}.png").stat().st_size > 1000

    run_dir = tmp_path / "runs" / "simcse" / f"{tiny_bert.name}-STS-B-cls-d0.1-s0-b16-lr0.001"
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


def test_a_legacy_results_file_of_the_long_job_resumes_without_training(tiny_bert, sts_b_dir, tmp_path, monkeypatch):
    """results/simcse_su/simcse.csv keeps getting rows from a run of the old code: new code skips them."""
    from legacy_results import SIMCSE_KEYS, write_legacy
    from stseval.runs import simcse as simcse_run

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    options = _queue_options(tiny_bert, sts_b_dir, tmp_path, then_whiten=True)
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
def test_queue_rejects_bad_options_before_training(tiny_bert, sts_b_dir, tmp_path, monkeypatch, overrides, option):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    with pytest.raises(StsevalError, match=f"^{option}"):
        _run_queue(**_queue_options(tiny_bert, sts_b_dir, tmp_path, **overrides))


def test_queue_rejects_empty_training_file_and_unwritable_folders(tiny_bert, sts_b_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n", encoding="utf-8")
    a_file = tmp_path / "a-file"
    a_file.write_text("", encoding="utf-8")
    for overrides, option in (({"train_on": str(blank)}, "--train-on"),
                              ({"out": a_file}, "--out"),
                              ({"runs_dir": a_file}, "--runs-dir")):
        with pytest.raises(StsevalError, match=f"^{option}"):
            _run_queue(**_queue_options(tiny_bert, sts_b_dir, tmp_path, **overrides))


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
    assert not list((tmp_path / "runs").glob("simcse/*/stseval_simcse.json"))  # nothing was trained


# --- speed without changing the math ------------------------------------------------------------


def test_length_sorted_chunks_cover_every_row_once_and_pad_little():
    from stseval.methods.simcse import length_sorted_chunks

    lengths = [5, 40, 7, 7, 33, 12, 64, 3] * 16
    groups = length_sorted_chunks(lengths, token_budget=256, min_rows=4)
    rows = [row for group, _ in groups for row in group]
    assert sorted(rows) == list(range(len(lengths)))
    assert all(width == max(lengths[row] for row in group) for group, width in groups)
    assert all(len(group) * width <= max(256, 4 * width) for group, width in groups)
    assert sum(len(group) * width for group, width in groups) < 0.7 * len(lengths) * max(lengths)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_chunked_forward_gives_the_padded_loss_and_gradient(tiny_bert, sentences, pooling):
    from stseval.methods.simcse import _loss_of_batch

    model = build_simcse_model(tiny_bert, pooling, 0.0, 32)
    loss_fn = build_loss(model, "su")
    features = model.preprocess(sentences[:24])
    doubled = {key: torch.cat([value, value]) if isinstance(value, torch.Tensor) else value
               for key, value in features.items()}
    first, second = model(doubled)["sentence_embedding"].chunk(2)
    padded = loss_fn.compute_loss_from_embeddings([first, second], None)
    padded.backward()
    padded_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    chunked, _ = _loss_of_batch(model, loss_fn, features, "su")
    chunked.backward()
    chunked_grads = [p.grad for p in model.parameters() if p.grad is not None]
    torch.testing.assert_close(chunked, padded, rtol=0, atol=1e-5)
    for ours, theirs in zip(chunked_grads, padded_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


# --- multi-process (torchrun) -------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_torchrun_two_processes_match_one_process_with_the_same_global_batch(tiny_bert, sts_b_dir, tmp_path):
    """2 CPU processes (gloo) x 8 sentences = 1 process x 16: same losses step by step, one model, one set of rows."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, STSEVAL_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    common = ["-m", "stseval.cli", "simcse-train", "--model", str(tiny_bert), "--tasks", "STS-B", "--data-dir",
              str(sts_b_dir), "--pooling", "cls", "--dropout", "0", "--lr", "1e-3", "--bootstrap", "0",
              "--curve-pairs", "0", "--device", "cpu"]
    runs = {}
    for name, launcher, batch in (("two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                           "--master_port", str(_free_port())], 8),
                                  ("one", [sys.executable], 16)):
        out, runs_dir = tmp_path / name / "out", tmp_path / name / "runs"
        command = [*launcher, *common, "--batch-size", str(batch), "--out", str(out), "--runs-dir", str(runs_dir)]
        finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr[-3000:]
        models = [path.parent for path in (runs_dir / "simcse").glob("*/stseval_simcse.json")]
        assert len(models) == 1, models
        rows = pd.read_csv(out / "simcse.csv", dtype=str, keep_default_na=False)
        assert list(zip(rows["method"], rows["metric"], strict=True)) == [
            ("raw", "spearman_cosine"), ("simcse", "spearman_cosine"), ("simcse", "spearman_cosine_minus_raw")]
        runs[name] = json.loads((models[0] / "stseval_simcse.json").read_text(encoding="utf-8"))["result"]
    assert runs["two"]["world_size"] == 2 and runs["one"]["world_size"] == 1
    assert runs["two"]["steps"] == runs["one"]["steps"] == 6  # 96 sentences / 16
    np.testing.assert_allclose(runs["two"]["losses"], runs["one"]["losses"], rtol=0, atol=2e-4)
    assert runs["one"]["losses"][-1] < runs["one"]["losses"][0]  # it trained: a wrong gradient would diverge


def test_best_valid_folder_of_a_model_without_pooler_has_no_random_pooler(tmp_path, sentences):
    """The e5 default has no pooler: neither the final nor the best-valid folder may gain a random one."""
    from safetensors import safe_open

    from stseval.methods.simcse import BEST_VALID_DIR, ValidationPairs

    folder = make_bert(tmp_path / "bert", with_pooler=False)
    validation = ValidationPairs(sentences[:20], sentences[20:40], [float(i % 5) for i in range(20)], every_steps=1)
    trained = train_simcse(folder, sentences, _settings(), tmp_path / "run", show_progress=False, validation=validation)
    final_vectors = trained.model.encode(sentences[:8])
    for saved in (tmp_path / "run", tmp_path / "run" / BEST_VALID_DIR):
        with safe_open(str(saved / "model.safetensors"), framework="pt") as handle:
            assert not any("pooler" in key for key in handle.keys()), saved
    assert [point["step"] for point in trained.curve] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(trained.model.encode(sentences[:8]), final_vectors)  # final weights restored


def test_bf16_training_lowers_the_loss_and_keeps_float32_weights(tiny_bert, sentences, tmp_path, monkeypatch):
    """--precision bf16: forward and loss under autocast, master weights and Adam state float32 (emulated bf16
    here when the CPU has none: same rounding, slower)."""
    monkeypatch.setenv("STSEVAL_ALLOW_EMULATED_BF16", "1")
    losses: list[float] = []
    seen_dtypes: set[torch.dtype] = set()
    trained = train_simcse(tiny_bert, sentences, _settings(epochs=4, precision="bf16"), tmp_path / "run",
                           show_progress=False, on_step=lambda step, loss: losses.append(loss))
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.2
    assert {parameter.dtype for parameter in trained.model.parameters()} == {torch.float32}
    assert trained.identity["precision"] == "bf16"  # a bf16 run is never reused as a float32 one
    # the forward really ran in bf16: a Linear's output under the same autocast is bfloat16
    handle = trained.model[0].auto_model.encoder.layer[0].intermediate.dense.register_forward_hook(
        lambda module, args, output: seen_dtypes.add(output.dtype))
    from stseval.encoders.precision import autocast

    with autocast("cpu", "bf16"):
        _forward(trained.model, sentences[:2])
    handle.remove()
    assert seen_dtypes == {torch.bfloat16}
    fp32 = train_simcse(tiny_bert, sentences, _settings(epochs=1), tmp_path / "fp32", show_progress=False)
    assert "precision" not in fp32.identity  # float32 folders keep the identity they had before --precision


def test_queue_scores_step_0_once_prints_x100_and_keeps_what_keep_asks(tiny_bert, sts_b_dir, tmp_path, monkeypatch):
    """Two dropouts share the untrained model's curve point; the log prints Spearman x 100 as the grids do;
    --keep decides which trained models stay on disk, and a folder missing one is trained again, not reused."""
    from stseval.methods import simcse as simcse_method
    from stseval.runs import simcse as simcse_run

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    real, calls = simcse_method._validation_spearman, []
    monkeypatch.setattr(simcse_method, "_validation_spearman", lambda *a, **k: calls.append(1) or real(*a, **k))
    lines: list[str] = []
    options = _queue_options(tiny_bert, sts_b_dir, tmp_path, dropouts=[0.1, 0.3], keep="none")
    out_csv = _run_queue(**dict(options, log=lines.append))
    assert len(calls) == 3  # 6 steps, a point every 20: step 0 once for both dropouts, then each run's last step
    assert "simcse-train: 2 model(s) to train, 12 steps of 16 sentences in all" in lines[0]  # before any work
    stems = [f"{tiny_bert.name}-STS-B-cls-d{rate}-s0-b16-lr0.001" for rate in ("0.1", "0.3")]
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
