"""Sentence vectors from a Transformer's hidden states: cls, pooler, last-avg, first-last-avg, layer-avg:N, ...

Every pooling reads the tuple `hidden_states` that a Hugging Face encoder returns with
`output_hidden_states=True`: `hidden_states[0]` is the embedding output (before any Transformer
layer), `hidden_states[i]` the output of layer i, and `hidden_states[-1]` the last layer. Means and
maxima run over real tokens only (`attention_mask == 1`), so padding never changes a vector.
[CLS] and [SEP] are real tokens and are included, as in Su's bert4keras code.

References:
    Su et al. 2021, "Whitening Sentence Representations for Better Semantics and Faster
    Retrieval", arXiv:2103.15316 (BERT-whitening; the cls / first-last-avg / last-avg grid).
    Su, "SimCSE on Chinese tasks", https://kexue.fm/archives/8348 (adds pooler and last2avg).

Example:
    >>> out = model(**batch, output_hidden_states=True)
    >>> vectors = pool_all([Pooling("cls"), Pooling("last-avg")], out.hidden_states, batch["attention_mask"])
    >>> vectors[Pooling("last-avg")].shape          # (batch, hidden)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stseval.common.errors import StsevalError
from stseval.common.lists import did_you_mean

# the values and their one parser live in the torch-free stseval/common/settings.py, so a typo fails before
# torch loads; re-exported here for the modules that imported them from this one
from stseval.common.settings import (  # noqa: F401 - re-exported
    LAYER_AVG,
    NEEDS_POOLER,
    POOLINGS,
    Pooling,
    layer_avg_index,
    parse_poolings,
)


def masked_mean(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: (b, s, h) states and (b, s) 0/1 mask -> (b, h)."""
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)
    token_count = mask.sum(dim=1).clamp(min=1.0)  # a row of pure padding gives 0, not NaN
    return (token_states * mask).sum(dim=1) / token_count


def masked_max(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Element-wise max over real tokens: (b, s, h) states and (b, s) 0/1 mask -> (b, h)."""
    padding = (attention_mask == 0).unsqueeze(-1)
    return token_states.masked_fill(padding, float("-inf")).max(dim=1).values


def pool(
    pooling: Pooling | str,
    hidden_states: Sequence[torch.Tensor],
    attention_mask: torch.Tensor,
    pooler_dense: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Compute one sentence vector per row of a padded batch.

    Args:
        pooling: a token pooling (not `sentence`): a `Pooling` value, as stseval's callers pass it; a name as
            rows write it ('cls', 'layer-avg:3') is read by `Pooling.read`, the one reader of names:
            - "cls": `hidden_states[-1][:, 0]`, the last layer at [CLS].
            - "pooler": `pooler_dense(hidden_states[-1][:, 0])` WITHOUT tanh, like bert4keras
              `with_pool='linear'` in Su's BERT-whitening / SimCSE code.
            - "pooler-tanh": `tanh(pooler_dense(...))`, i.e. Hugging Face `pooler_output`.
            - "last-avg": masked mean of `hidden_states[-1]`.
            - "first-last-avg": masked mean of `(hidden_states[1] + hidden_states[-1]) / 2`.
              `hidden_states[1]` is the FIRST TRANSFORMER LAYER's output, not the embedding
              output `hidden_states[0]`: Su's code averages the outputs of
              `Transformer-0-FeedForward-Norm` and of the last layer.
            - "last2avg": masked mean of `(hidden_states[-2] + hidden_states[-1]) / 2`.
            - "max": masked element-wise max of `hidden_states[-1]`.
            - "layer-avg:N": masked mean of `hidden_states[N]`; layer-avg:0 averages the embedding
              output (static token embeddings plus position and type embeddings, after LayerNorm),
              layer-avg:L of an L-layer model equals last-avg.
        hidden_states: (n_layers + 1) tensors of shape (b, s, h), embedding output first.
        attention_mask: (b, s) with 1 for real tokens and 0 for padding.
        pooler_dense: the model's trained pooler dense layer (h -> h); needed by "pooler" and
            "pooler-tanh" only.
    Returns:
        (b, h) tensor in the dtype of `hidden_states`.
    Raises:
        StsevalError for an unknown name, a pooler pooling without `pooler_dense`, or a layer
        pooling on a model with too few layers.
    """
    name = str(pooling)
    value = pooling if isinstance(pooling, Pooling) else Pooling.read(pooling)
    if value is None or not value.needs_hidden_states:
        raise StsevalError(f"--pooling: unknown pooling {name!r}; {did_you_mean(name, POOLINGS)}"
                           f"choose from {', '.join(POOLINGS)}")
    kind, last = value.kind, hidden_states[-1]
    if kind == "cls":
        return last[:, 0]
    if value.needs_pooler:
        if pooler_dense is None:
            raise StsevalError(
                f"--pooling {name}: this model has no trained pooler layer; use cls, last-avg, "
                "first-last-avg, last2avg or max"
            )
        linear = pooler_dense(last[:, 0])
        return torch.tanh(linear) if kind == "pooler-tanh" else linear
    if kind == "last-avg":
        return masked_mean(last, attention_mask)
    if kind in ("first-last-avg", "last2avg"):
        if len(hidden_states) < 3:
            raise StsevalError(f"--pooling {name}: needs a model with at least 2 Transformer layers")
        other = hidden_states[1] if kind == "first-last-avg" else hidden_states[-2]
        # the mean is linear, so averaging layers first equals averaging the two layer means
        return masked_mean((other + last) / 2, attention_mask)
    if kind == "max":
        return masked_max(last, attention_mask)
    layer = value.layer  # layer-avg:N, the one kind left
    if layer is None:
        raise AssertionError(f"pool: no branch for the pooling kind {kind!r}")
    if layer >= len(hidden_states):
        raise StsevalError(f"--pooling {name}: the model has {len(hidden_states) - 1} Transformer layers "
                           f"({LAYER_AVG}:0 to {LAYER_AVG}:{len(hidden_states) - 1})")
    return masked_mean(hidden_states[layer], attention_mask)


def pool_all(
    poolings: Sequence[Pooling | str],
    hidden_states: Sequence[torch.Tensor],
    attention_mask: torch.Tensor,
    pooler_dense: torch.nn.Module | None = None,
) -> dict:
    """Every requested pooling from one forward pass: {each of `poolings`, as given: (b, h) tensor}; see `pool`."""
    return {pooling: pool(pooling, hidden_states, attention_mask, pooler_dense) for pooling in poolings}
