"""The SimCSE loss (stseval/methods/simcse/loss.py) against Su's and princeton's formulas, written out by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stseval.common.settings import Dropout, Pooling
from stseval.encoders.pooling import POOLINGS
from stseval.methods.simcse.loss import build_loss, simcse_batch_loss
from stseval.methods.simcse.model import build_simcse_model
from training_helpers import forward

pytestmark = pytest.mark.usefixtures("pinned_torch")  # one torch thread: two CPU cores are shared with other work


def _su_rows_by_hand(copy_one: torch.Tensor, copy_two: torch.Tensor, scale: float = 20.0) -> torch.Tensor:
    """Su's bojone/SimCSE `simcse_loss`, per row: batch interleaved [x0, x0', x1, x1', ...], target = partner."""
    batch = torch.stack([copy_one, copy_two], dim=1).reshape(-1, copy_one.shape[1])  # (2B, d)
    batch = F.normalize(batch, dim=1)
    similarities = batch @ batch.T - torch.eye(len(batch)) * 1e12  # a row never matches itself
    partner = torch.arange(len(batch)) ^ 1  # 0<->1, 2<->3, ...
    return F.cross_entropy(similarities * scale, partner, reduction="none")


def test_su_loss_equals_su_formula_by_hand(simcse_bert):
    generator = torch.Generator().manual_seed(0)
    copy_one, copy_two = torch.randn(6, 8, generator=generator), torch.randn(6, 8, generator=generator)
    loss = build_loss(build_simcse_model(simcse_bert, Pooling("cls"), Dropout(0.1), 32), "su")
    rows = _su_rows_by_hand(copy_one, copy_two)

    ours = loss.compute_loss_from_embeddings([copy_one, copy_two], None)
    torch.testing.assert_close(ours, rows[0::2].mean())  # Su's rows anchored on copy one
    mirrored = loss.compute_loss_from_embeddings([copy_two, copy_one], None)
    torch.testing.assert_close((ours + mirrored) / 2, rows.mean())  # Su's whole loss


def test_princeton_loss_is_plain_info_nce(simcse_bert):
    generator = torch.Generator().manual_seed(1)
    copy_one, copy_two = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    loss = build_loss(build_simcse_model(simcse_bert, Pooling("cls"), Dropout(0.1), 32), "princeton")
    cosine = F.normalize(copy_one, dim=1) @ F.normalize(copy_two, dim=1).T
    by_hand = F.cross_entropy(cosine / 0.05, torch.arange(5))
    torch.testing.assert_close(loss.compute_loss_from_embeddings([copy_one, copy_two], None), by_hand)


def test_one_step_of_each_loss_on_the_model_matches_the_formula(simcse_bert, simcse_texts):
    """Through the model (dropout 0, so both copies are equal): su and cached give Su's number."""
    model = build_simcse_model(simcse_bert, Pooling("first-last-avg"), Dropout(0.0), max_length=32)
    texts = simcse_texts[:8]
    embeddings = forward(model, texts)
    by_hand = _su_rows_by_hand(embeddings, embeddings).mean()
    for name in ("su", "cached"):
        loss = build_loss(model, name, mini_batch_size=3)
        value = loss([model.preprocess(texts), model.preprocess(texts)], None)
        torch.testing.assert_close(value.detach(), by_hand, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_chunked_forward_gives_the_padded_loss_and_gradient(simcse_bert, simcse_texts, pooling):
    model = build_simcse_model(simcse_bert, Pooling(pooling), Dropout(0.0), 32)
    loss_fn = build_loss(model, "su")
    features = model.preprocess(simcse_texts[:24])
    doubled = {key: torch.cat([value, value]) if isinstance(value, torch.Tensor) else value
               for key, value in features.items()}
    first, second = model(doubled)["sentence_embedding"].chunk(2)
    padded = loss_fn.compute_loss_from_embeddings([first, second], None)
    padded.backward()
    padded_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    chunked, _ = simcse_batch_loss(model, loss_fn, features, "su")
    chunked.backward()
    chunked_grads = [p.grad for p in model.parameters() if p.grad is not None]
    torch.testing.assert_close(chunked, padded, rtol=0, atol=1e-5)
    for ours, theirs in zip(chunked_grads, padded_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
