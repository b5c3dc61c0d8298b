"""The training loop (stseval/methods/simcse/loop.py) through train_simcse on a tiny random BERT: it learns,
it is seeded, it writes a loadable folder, and bf16 keeps float32 weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stseval.methods.simcse.checkpoints import CHECKPOINT_DIR
from stseval.methods.simcse.run_folder import SETTINGS_FILE
from stseval.methods.simcse.train import train_simcse
from training_helpers import forward, simcse_settings

pytestmark = pytest.mark.usefixtures("pinned_torch")  # one torch thread: two CPU cores are shared with other work


def test_training_lowers_the_loss_and_writes_a_loadable_folder(simcse_bert, simcse_texts, tmp_path):
    losses: list[float] = []
    trained = train_simcse(simcse_bert, simcse_texts, simcse_settings(epochs=4), tmp_path / "run", base_model="tiny",
                           card_facts={"task": "synthetic"}, show_progress=False,
                           on_step=lambda step, loss: losses.append(loss))
    assert trained.steps == 16 and len(losses) == 16 and trained.losses == losses
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.2
    assert (tmp_path / "run" / SETTINGS_FILE).is_file() and not (tmp_path / "run" / CHECKPOINT_DIR).exists()
    card = (tmp_path / "run" / "README.md").read_text(encoding="utf-8")
    assert "dropout" in card and "synthetic" in card and "sentences_sha256" in card
    # a card, not a log: the per-step losses stay in stseval_simcse.json (the list was the card's bulk)
    assert card.startswith("---\nlibrary_name: sentence-transformers") and "- losses:" not in card
    assert not trained.model.training


def test_same_seed_gives_same_vectors(simcse_bert, simcse_texts, tmp_path):
    def vectors(seed: int, folder: str) -> np.ndarray:
        trained = train_simcse(simcse_bert, simcse_texts, simcse_settings(seed=seed), tmp_path / folder,
                               show_progress=False)
        return trained.model.encode(simcse_texts, convert_to_numpy=True)

    first = vectors(0, "a")
    np.testing.assert_allclose(vectors(0, "b"), first, rtol=0, atol=1e-6)
    assert not np.allclose(vectors(1, "c"), first, atol=1e-4)


def test_bf16_training_lowers_the_loss_and_keeps_float32_weights(simcse_bert, simcse_texts, tmp_path, monkeypatch):
    """--precision bf16: forward and loss under autocast, master weights and Adam state float32 (emulated bf16
    here when the CPU has none: same rounding, slower)."""
    monkeypatch.setenv("STSEVAL_ALLOW_EMULATED_BF16", "1")
    losses: list[float] = []
    seen_dtypes: set[torch.dtype] = set()
    trained = train_simcse(simcse_bert, simcse_texts, simcse_settings(epochs=4, precision="bf16"), tmp_path / "run",
                           show_progress=False, on_step=lambda step, loss: losses.append(loss))
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.2
    assert {parameter.dtype for parameter in trained.model.parameters()} == {torch.float32}
    assert trained.identity["precision"] == "bf16"  # a bf16 run is never reused as a float32 one
    # the forward really ran in bf16: a Linear's output under the same autocast is bfloat16
    handle = trained.model[0].auto_model.encoder.layer[0].intermediate.dense.register_forward_hook(
        lambda module, args, output: seen_dtypes.add(output.dtype))
    from stseval.encoders.precision import autocast

    with autocast("cpu", "bf16"):
        forward(trained.model, simcse_texts[:2])
    handle.remove()
    assert seen_dtypes == {torch.bfloat16}
    fp32 = train_simcse(simcse_bert, simcse_texts, simcse_settings(epochs=1), tmp_path / "fp32", show_progress=False)
    assert "precision" not in fp32.identity  # float32 folders keep the identity they had before --precision
