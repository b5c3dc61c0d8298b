"""CoSENT training (stseval/methods/cosent.py) on a tiny random BERT and seeded labelled pairs (see `_pairs`)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers.sentence_transformer.losses import CoSENTLoss

from stseval.common.errors import StsevalError
from stseval.evaluation.metrics import spearman_cosine
from stseval.methods.cosent import CosentSettings, train_cosent
from stseval.methods.simcse import BEST_VALID_DIR, CHECKPOINT_DIR, SETTINGS_FILE, ValidationPairs
from tiny_models import VOCAB, make_bert

CHARS = "".join(token for token in VOCAB if len(token) == 1 and not token.isascii())


@pytest.fixture(autouse=True)
def _few_threads():
    """Two CPU cores are shared with other work: keep torch to one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
    values = dict(pooling="cls", batch_size=16, learning_rate=3e-3, epochs=4, max_length=32, seed=0,
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


def _stop_at(step_to_stop: int):
    def on_step(step: int, loss: float) -> None:
        if step == step_to_stop:
            raise KeyboardInterrupt
    return on_step


def test_interrupted_training_resumes_to_the_same_weights(tiny_bert, tmp_path):
    texts_a, texts_b, gold = _pairs(96, seed=0)
    settings = _settings(epochs=2)  # 6 steps an epoch, a checkpoint every 2
    with pytest.raises(KeyboardInterrupt):
        train_cosent(tiny_bert, texts_a, texts_b, gold, settings, tmp_path / "run", show_progress=False,
                     on_step=_stop_at(9))
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
    with pytest.raises(StsevalError, match="--runs-dir: .* learning_rate"):
        train_cosent(tiny_bert, texts_a, texts_b, gold, _settings(epochs=2, learning_rate=1e-4), tmp_path / "run")


def test_constant_labels_are_refused(tiny_bert, tmp_path):
    texts_a, texts_b, _ = _pairs(8, seed=0)
    with pytest.raises(StsevalError, match="every training label is 1"):
        train_cosent(tiny_bert, texts_a, texts_b, [1.0] * 8, _settings(), tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run").exists()
