"""The unsupervised SimCSE loss: InfoNCE on cosine similarities of two dropout views of each sentence.

Method (Gao et al. 2021, arXiv:2104.08821; Su's Chinese runs, https://kexue.fm/archives/8348 and
github.com/bojone/SimCSE): every sentence is its own positive. A batch of B sentences goes through
the encoder twice with dropout on, so the two copies of a sentence differ only by their dropout
masks; the other sentences of the batch are the negatives. The loss is InfoNCE on cosine
similarities at temperature 0.05 (sentence-transformers `MultipleNegativesRankingLoss(scale=20)`
on (text, text) pairs). Labels are never used.
"""

from __future__ import annotations

import time
from typing import Literal

import torch
from torch import nn

from stseval.common.errors import StsevalError
from stseval.methods.simcse.batching import embed_length_sorted
from stseval.methods.simcse.settings import LOSSES

SU_DIRECTIONS: tuple[Literal["query_to_doc", "query_to_query"], ...] = ("query_to_doc", "query_to_query")
"""MultipleNegativesRankingLoss directions that reproduce Su's `simcse_loss` rows."""

SCALE = 20.0
"""Cosine similarities are multiplied by 1 / temperature = 1 / 0.05 (Su and Gao et al.)."""


def build_loss(model, loss: str = "su", mini_batch_size: int = 32, gather_across_devices: bool = False) -> nn.Module:
    """The SimCSE loss on (text, text) pairs at temperature 0.05: a sentence-transformers loss module.

    A batch of B sentences is encoded twice with dropout on: u = copy one, (B, d), and v = copy two,
    (B, d). Cosine similarities are multiplied by `SCALE` = 20, and row i is a cross-entropy whose
    target is v_i; the loss is the mean over the B rows, a scalar tensor.

        su:        logits (B, 2B) = 20 * [cos(u, v) | cos(u, u) with the diagonal masked]: for copy one
                   of sentence i the candidates are copy two of every sentence AND copy one of every
                   other sentence (2B - 1 candidates), exactly one row of Su's `simcse_loss`
                   (`MultipleNegativesRankingLoss(directions=SU_DIRECTIONS)`). Su's Keras loss also
                   averages the mirrored rows (copy two as anchor); both copies come from the same
                   dropout distribution, so that half has the same expectation. Shown in
                   tests/test_simcse_loss.py: ours equals Su's rows for copy one, and Su's full loss is
                   the mean of ours and ours with the columns swapped.
        princeton: logits (B, B) = 20 * cos(u, v): the default direction only (copy one against copy
                   two of every sentence, B candidates), as in princeton-nlp/SimCSE.
        cached:    the `su` loss through `CachedMultipleNegativesRankingLoss` (GradCache): the same
                   numbers, memory bounded by `mini_batch_size`, for large batches on small devices.

    Args:
        model: the SentenceTransformer being trained (`stseval.methods.simcse.model.build_simcse_model`).
        loss: "su", "princeton" or "cached" (`LOSSES`).
        mini_batch_size: forward chunk of the cached loss; ignored by the others.
        gather_across_devices: under torchrun, take the negatives from every process's batch.
    Returns:
        a sentence-transformers loss module: call it on ([features, features], None) (two forward
        passes, so two dropout masks), or call its `compute_loss_from_embeddings([u, v], None)` on
        the two (B, d) views (`simcse_batch_loss` does that).
    Raises:
        StsevalError naming --loss for an unknown loss.

    References:
        - Gao, Yao, Chen 2021, SimCSE: Simple Contrastive Learning of Sentence Embeddings, arXiv:2104.08821
        - Su Jianlin 2021, https://kexue.fm/archives/8348 (the Chinese STS runs, github.com/bojone/SimCSE)

    Requirements:
        1. single sentences, each its own (anchor, positive) pair; labels are not used

    Inputs:
        +-------------------------------------+--------+
        | Texts                               | Labels |
        +=====================================+========+
        | (sentence, the same sentence) pairs | none   |
        +-------------------------------------+--------+

    Relations:
        - `stseval.methods.cosent` trains on labelled pairs through the same loop with `CoSENTLoss`.

    Example:
        >>> model = build_simcse_model(folder, "cls", dropout=0.1, max_length=64)
        >>> loss_fn = build_loss(model, "su")
        >>> features = model.preprocess(["今天天气很好", "我喜欢吃苹果"])
        >>> loss_fn([features, dict(features)], None)    # a scalar tensor
    """
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )

    if loss == "su":
        return MultipleNegativesRankingLoss(model, scale=SCALE, directions=SU_DIRECTIONS,
                                            gather_across_devices=gather_across_devices)
    if loss == "princeton":
        return MultipleNegativesRankingLoss(model, scale=SCALE, gather_across_devices=gather_across_devices)
    if loss == "cached":
        return CachedMultipleNegativesRankingLoss(model, scale=SCALE, directions=SU_DIRECTIONS,
                                                  mini_batch_size=mini_batch_size,
                                                  gather_across_devices=gather_across_devices)
    raise StsevalError(f"--loss: unknown loss {loss!r}; choose from {', '.join(LOSSES)}")


def simcse_batch_loss(
    forward_model: nn.Module, loss_fn: nn.Module, features: dict, loss: str
) -> tuple[torch.Tensor, float]:
    """The loss on (copy one, copy two) of a batch, and the forward seconds.

    su / princeton: the 2B copies (every row draws its own dropout mask, as in Su's and princeton's
    code, which repeat each sentence in the batch) go through the encoder in length-sorted chunks,
    each padded only to its own longest sentence (`length_sorted_chunks`). A sentence's vector does
    not depend on the padding or on the other rows of its forward pass (attention masks padding), so
    this is the same math as one padded pass, with far fewer padded tokens. cached: the loss runs its
    own mini-batched forward (GradCache).

    Args:
        forward_model: the SentenceTransformer in train mode (dropout on).
        loss_fn: `build_loss(forward_model, loss)`.
        features: the tokenised batch of B sentences (`model.preprocess`): input_ids, attention_mask (B, s), ...
        loss: the name `loss_fn` was built with.
    Returns:
        (scalar loss tensor, seconds spent in the forward pass and the loss).
    """
    tick = time.perf_counter()
    if loss == "cached":
        value = loss_fn([features, dict(features)], None)
        return value, time.perf_counter() - tick
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    if not isinstance(loss_fn, MultipleNegativesRankingLoss):  # build_loss's su and princeton losses are
        raise TypeError(f"loss {loss!r}: expected a MultipleNegativesRankingLoss, got {type(loss_fn).__name__}")
    doubled = {key: torch.cat([value, value]) if isinstance(value, torch.Tensor) else value
               for key, value in features.items()}
    first, second = embed_length_sorted(forward_model, doubled).chunk(2)
    # the loss ignores labels (the other rows are the negatives); its hint says Tensor, the trainer passes None too
    value = loss_fn.compute_loss_from_embeddings([first, second], None)  # type: ignore[arg-type]
    return value, time.perf_counter() - tick
