"""Poolings over a hand-made padded batch, compared with loops written out by hand."""

import itertools

import numpy as np
import pytest
import torch

from stseval.common.errors import StsevalError
from stseval.encoders.pooling import POOLINGS, masked_max, masked_mean, parse_poolings, pool, pool_all

N_LAYERS = 3


@pytest.fixture
def batch():
    """hidden_states (embeddings + 3 layers) of shape (2, 5, 4) and a mask with 3 and 5 real tokens."""
    generator = torch.Generator().manual_seed(0)
    hidden_states = tuple(torch.randn(2, 5, 4, generator=generator) for _ in range(N_LAYERS + 1))
    attention_mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    return hidden_states, attention_mask


@pytest.fixture
def dense():
    torch.manual_seed(0)
    return torch.nn.Linear(4, 4)


def _by_hand(name, hidden_states, attention_mask, dense):
    """The same poolings written as loops over real tokens, row by row, in numpy."""
    layers = [h.numpy() for h in hidden_states]
    rows = []
    for row, mask in enumerate(attention_mask.tolist()):
        n_real = sum(mask)  # right padding: real tokens come first
        last = layers[-1][row, :n_real]
        if name == "cls":
            rows.append(last[0])
        elif name in ("pooler", "pooler-tanh"):
            linear = dense.weight.detach().numpy() @ last[0] + dense.bias.detach().numpy()
            rows.append(np.tanh(linear) if name == "pooler-tanh" else linear)
        elif name == "last-avg":
            rows.append(last.mean(axis=0))
        elif name == "first-last-avg":
            first = layers[1][row, :n_real]  # output of the first Transformer layer
            rows.append(((first + last) / 2).mean(axis=0))
        elif name == "last2avg":
            rows.append(((layers[-2][row, :n_real] + last) / 2).mean(axis=0))
        elif name == "max":
            rows.append(last.max(axis=0))
    return np.stack(rows)


@pytest.mark.parametrize("name", POOLINGS)
def test_each_pooling_matches_hand_computation(batch, dense, name):
    hidden_states, attention_mask = batch
    with torch.no_grad():
        got = pool(name, hidden_states, attention_mask, dense).numpy()
    np.testing.assert_allclose(got, _by_hand(name, hidden_states, attention_mask, dense), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", POOLINGS)
def test_padding_values_do_not_matter(batch, dense, name):
    hidden_states, attention_mask = batch
    garbage = tuple(h.clone() for h in hidden_states)
    for h in garbage:
        h[0, 3:] = 1e6  # row 0 has 3 real tokens; everything after is padding
    with torch.no_grad():
        clean = pool(name, hidden_states, attention_mask, dense)
        dirty = pool(name, garbage, attention_mask, dense)
    torch.testing.assert_close(clean, dirty)


def test_first_last_avg_uses_first_layer_not_embeddings(batch):
    hidden_states, attention_mask = batch
    poisoned = (torch.full_like(hidden_states[0], float("nan")), *hidden_states[1:])
    got = pool("first-last-avg", poisoned, attention_mask)
    assert torch.isfinite(got).all()  # hidden_states[0] (embedding output) is never read
    expected = masked_mean((hidden_states[1] + hidden_states[-1]) / 2, attention_mask)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, masked_mean((hidden_states[0] + hidden_states[-1]) / 2, attention_mask))


def test_last2avg_uses_last_two_layers(batch):
    hidden_states, attention_mask = batch
    expected = masked_mean((hidden_states[-2] + hidden_states[-1]) / 2, attention_mask)
    torch.testing.assert_close(pool("last2avg", hidden_states, attention_mask), expected)


def test_pooler_is_linear_and_pooler_tanh_applies_tanh(batch, dense):
    hidden_states, attention_mask = batch
    with torch.no_grad():
        linear = pool("pooler", hidden_states, attention_mask, dense)
        squashed = pool("pooler-tanh", hidden_states, attention_mask, dense)
        torch.testing.assert_close(linear, dense(hidden_states[-1][:, 0]))
    torch.testing.assert_close(squashed, torch.tanh(linear))
    assert not torch.allclose(linear, squashed)  # tanh really changes the vectors


def test_pooler_without_dense_layer_is_a_clear_error(batch):
    hidden_states, attention_mask = batch
    with pytest.raises(StsevalError, match="--pooling pooler.*no trained pooler"):
        pool("pooler", hidden_states, attention_mask, None)


def test_layer_poolings_need_two_layers(batch):
    hidden_states, attention_mask = batch
    with pytest.raises(StsevalError, match="at least 2"):
        pool("last2avg", hidden_states[:2], attention_mask)


def test_pool_all_returns_every_name(batch, dense):
    hidden_states, attention_mask = batch
    pooled = pool_all(list(POOLINGS), hidden_states, attention_mask, dense)
    assert list(pooled) == list(POOLINGS)
    assert all(vector.shape == (2, 4) for vector in pooled.values())


def test_masked_helpers_ignore_padding():
    states = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert masked_mean(states, mask).item() == 2.0
    assert masked_max(states, mask).item() == 3.0


def test_every_pooling_name_gives_its_own_vectors(batch, dense):
    """Each --pooling name is a grid row of its own: no two may quietly compute the same vectors."""
    hidden_states, attention_mask = batch
    with torch.no_grad():
        pooled = pool_all(list(POOLINGS), hidden_states, attention_mask, dense)
    for first, second in itertools.combinations(POOLINGS, 2):
        assert not torch.allclose(pooled[first], pooled[second]), (first, second)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("cls", ["cls"]),
        ("cls, last-avg", ["cls", "last-avg"]),
        (["first-last-avg", "cls,first-last-avg"], ["first-last-avg", "cls"]),
        ("ALL", list(POOLINGS)),
    ],
)
def test_parse_poolings(given, expected):
    assert parse_poolings(given) == expected


@pytest.mark.parametrize("given", ["mean", "cls,avg", ["last_avg"], "", []])
def test_parse_poolings_rejects_unknown_names(given):
    with pytest.raises(StsevalError, match="--pooling"):
        parse_poolings(given)
