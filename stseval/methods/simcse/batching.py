"""Batches on their way through the encoder: moved to a device, and forwarded in length-sorted chunks.

Padding every row of a batch to its longest sentence wastes most of a forward pass on short
sentences. `embed_length_sorted` groups rows of similar length (`length_sorted_chunks`) and pads
each group only to its own longest row; attention masks the padding, so every row gets the vector
one padded pass would give it. SimCSE (`stseval.methods.simcse.loss`), CoSENT
(`stseval.methods.cosent`) and the step timing of the loop use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def to_device(features: dict, device: torch.device | str) -> dict:
    """The tensors of a preprocessed batch moved to `device`; other entries (e.g. a task name) kept as they are."""
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in features.items()}



def embed_length_sorted(forward_model: nn.Module, features: dict) -> torch.Tensor:
    """Sentence embeddings (n, d) of a tokenised batch of n rows, forwarded in length-sorted chunks.

    Each chunk is padded only to its own longest row (`length_sorted_chunks`); attention masks the
    padding, so every row gets the vector one padded pass would give it, with far fewer padded tokens.
    Rows come back in the order of `features`.
    """
    mask = features["attention_mask"]
    pieces, order = [], []
    for rows, width in length_sorted_chunks(mask.sum(dim=1).tolist()):
        index = torch.tensor(rows)
        chunk = {key: value[index, :width] if isinstance(value, torch.Tensor) and value.dim() == 2
                 and value.shape == mask.shape else value for key, value in features.items()}
        pieces.append(forward_model(chunk)["sentence_embedding"])
        order.extend(rows)
    return torch.cat(pieces)[torch.argsort(torch.tensor(order))]


def length_sorted_chunks(
    lengths: Sequence[int], token_budget: int = 2048, min_rows: int = 8
) -> list[tuple[list[int], int]]:
    """Rows grouped by length so that each group pads little: [(row indices, padded width), ...].

    Args:
        lengths: real token count of each row (attention mask sums), shape (n,).
        token_budget: a group holds at most max(min_rows, token_budget // width) rows, so the
            matmuls stay large while the padding stays small.
        min_rows: smallest group a long row can force.
    Returns:
        groups covering every row once, shortest rows first; width = the group's longest row.
    """
    order = sorted(range(len(lengths)), key=lambda row: (lengths[row], row))
    groups: list[tuple[list[int], int]] = []
    start = len(order)
    while start > 0:  # fill from the longest rows down: the width of a group is its first row's length
        width = max(1, int(lengths[order[start - 1]]))
        size = max(min_rows, token_budget // width)
        rows = order[max(0, start - size):start]
        groups.append((rows, width))
        start -= len(rows)
    return groups[::-1]
