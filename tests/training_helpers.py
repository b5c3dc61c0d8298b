"""Helpers shared by the training tests (SimCSE and CoSENT through one loop): seeded sentences, settings, data.

The plain functions behind the fixtures in tests/conftest.py (simcse_bert, simcse_texts, sts_b_dir) and the
training tests.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from stseval.common.settings import Dropout, Pooling
from stseval.methods.simcse import SimcseSettings
from tiny_models import VOCAB

CHARS = "".join(token for token in VOCAB if len(token) == 1 and not token.isascii())  # the tiny vocab's Chinese
N_LAYERS = 3
"""Layers of the SimCSE tests' tiny BERT: 3, so first-last-avg and last2avg differ."""


def seeded_sentences() -> list[str]:
    """64 seeded random sentences of 4-16 characters over the tiny vocabulary."""
    chooser = random.Random(0)
    return ["".join(chooser.choice(CHARS) for _ in range(chooser.randint(4, 16))) for _ in range(64)]


def simcse_settings(**overrides) -> SimcseSettings:
    """Settings that make a tiny model learn in a few steps."""
    values = dict(pooling=Pooling("cls"), dropout=Dropout(0.1),
                  batch_size=16, learning_rate=1e-3, epochs=1, max_length=32, seed=0)
    values.update(overrides)
    return SimcseSettings(**values)


def forward(model, texts: list[str]) -> torch.Tensor:
    """The model's sentence embeddings (n, d) of `texts`, without gradient, in the model's current mode."""
    with torch.no_grad():
        return model(model.preprocess(texts))["sentence_embedding"]


def stop_at(step_to_stop: int):
    """An on_step callback that interrupts training (KeyboardInterrupt) after step `step_to_stop`."""
    def on_step(step: int, loss: float) -> None:
        if step == step_to_stop:
            raise KeyboardInterrupt
    return on_step


def write_sts_b_folder(tmp_path: Path) -> Path:
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


def free_port() -> int:
    """A TCP port free on this machine now, for torchrun's --master_port."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
