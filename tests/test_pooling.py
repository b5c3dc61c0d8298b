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
    assert [str(pooling) for pooling in parse_poolings(given)] == expected


@pytest.mark.parametrize("given", ["mean", "cls,avg", ["last_avg"], "", []])
def test_parse_poolings_rejects_unknown_names(given):
    with pytest.raises(StsevalError, match="--pooling"):
        parse_poolings(given)


@pytest.mark.parametrize("layer", range(N_LAYERS + 1))
def test_layer_avg_is_the_masked_mean_of_that_hidden_state(batch, layer):
    hidden_states, attention_mask = batch
    by_hand = np.stack([hidden_states[layer][row, :n_real].numpy().mean(axis=0)
                        for row, n_real in enumerate(attention_mask.sum(dim=1).tolist())])
    with torch.no_grad():
        got = pool(f"layer-avg:{layer}", hidden_states, attention_mask).numpy()
    np.testing.assert_allclose(got, by_hand, rtol=1e-5, atol=1e-6)


def test_layer_avg_of_the_last_layer_is_last_avg_and_layer_zero_is_the_embedding_output(batch):
    hidden_states, attention_mask = batch
    pooled = pool_all([f"layer-avg:{N_LAYERS}", "last-avg", "layer-avg:0"], hidden_states, attention_mask)
    assert torch.equal(pooled[f"layer-avg:{N_LAYERS}"], pooled["last-avg"])  # bit for bit
    assert torch.equal(pooled["layer-avg:0"], masked_mean(hidden_states[0], attention_mask))


def test_layer_avg_past_the_model_s_layers_is_a_clear_error(batch):
    hidden_states, attention_mask = batch
    with pytest.raises(StsevalError, match=f"--pooling layer-avg:{N_LAYERS + 1}: the model has {N_LAYERS} "):
        pool(f"layer-avg:{N_LAYERS + 1}", hidden_states, attention_mask)


def test_one_forward_pass_serves_every_layer_and_layer_avg_last_equals_last_avg(tmp_path, monkeypatch):
    """encode() over a real (tiny) BERT: layer-avg:N is hidden_states[N]'s masked mean, from one pass per batch."""
    from transformers import AutoModel, AutoTokenizer

    from stseval.encoders.encoder import Encoder, encode, load_encoder
    from tiny_models import N_LAYERS as TINY_LAYERS
    from tiny_models import SENTENCES, make_bert

    monkeypatch.setenv("STSEVAL_HOME", str(tmp_path / "home"))
    folder = make_bert(tmp_path / "bert", with_pooler=False)
    encoder = load_encoder(str(folder))
    calls = []
    forward = Encoder.forward
    monkeypatch.setattr(Encoder, "forward", lambda self, batch: calls.append(1) or forward(self, batch))
    names = [f"layer-avg:{layer}" for layer in range(TINY_LAYERS + 1)] + ["last-avg"]
    got = encode(encoder, list(SENTENCES[:3]), names, max_length=16, batch_size=8, show_progress=False)
    passes_for_all = len(calls)
    encode(encoder, list(SENTENCES[:3]), ["last-avg"], max_length=16, batch_size=8, show_progress=False)
    assert passes_for_all == len(calls) - passes_for_all > 0  # every layer costs what one pooling does
    np.testing.assert_array_equal(got[f"layer-avg:{TINY_LAYERS}"], got["last-avg"])
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    for row, text in enumerate(SENTENCES[:3]):
        with torch.no_grad():
            states = model(**tokenizer(text, return_tensors="pt"), output_hidden_states=True).hidden_states
        for layer in range(TINY_LAYERS + 1):  # one sentence alone: no padding, the mean over every token
            np.testing.assert_allclose(got[f"layer-avg:{layer}"][row], states[layer][0].mean(dim=0).numpy(),
                                       rtol=1e-4, atol=1e-5)
    assert encoder.supports(f"layer-avg:{TINY_LAYERS}") and not encoder.supports(f"layer-avg:{TINY_LAYERS + 1}")


@pytest.mark.parametrize(("given", "expected"), [
    ("layer-avg:3", ["layer-avg:3"]),
    ("layer-avg:0-2,cls", ["layer-avg:0", "layer-avg:1", "layer-avg:2", "cls"]),
    ("layer-avg:1-1, layer-avg:1", ["layer-avg:1"]),
])
def test_parse_poolings_expands_layer_ranges(given, expected):
    assert [str(pooling) for pooling in parse_poolings(given)] == expected


@pytest.mark.parametrize("given", ["layer-avg", "layer-avg:", "layer-avg:x", "layer-avg:3-1", "layer-avg:-1",
                                   "layer-avg:1-"])
def test_parse_poolings_rejects_bad_layer_names(given):
    with pytest.raises(StsevalError, match="--pooling"):
        parse_poolings(given)


@pytest.mark.parametrize("name", [*POOLINGS, f"layer-avg:{N_LAYERS}"])
def test_a_pooling_value_pools_exactly_as_its_name(batch, dense, name):
    from stseval.common.settings import Pooling

    hidden_states, attention_mask = batch
    with torch.no_grad():
        by_value = pool(Pooling.parse(name), hidden_states, attention_mask, dense)
        pooled = pool_all([Pooling.parse(name), name], hidden_states, attention_mask, dense)
    assert torch.equal(by_value, pool(name, hidden_states, attention_mask, dense))
    assert torch.equal(pooled[name], pooled[Pooling.parse(name)])  # keyed as given: the name or the value


@pytest.mark.parametrize("name", ["sentence", "mean"])
def test_pool_refuses_what_is_not_a_token_pooling(batch, name):
    from stseval.common.settings import Pooling

    hidden_states, attention_mask = batch
    given = Pooling(name) if name == "sentence" else name
    with pytest.raises(StsevalError, match=f"^--pooling: unknown pooling '{name}'; .*choose from cls, "):
        pool(given, hidden_states, attention_mask)
