"""RowAdam (stseval/row_adam.py) gives dense Adam's weights while updating only embedding rows ever touched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from stseval.methods.row_adam import RowAdam
from tiny_models import make_bert


class _Bag(nn.Module):
    """An embedding big enough that most rows are never touched, and a dense layer after it."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(5000, 16, padding_idx=0)
        self.linear = nn.Linear(16, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.linear(self.embedding(ids)).pow(2).mean()


def test_weights_equal_dense_adam_bit_for_bit_when_rows_come_and_go():
    torch.manual_seed(0)
    ours, dense = _Bag(), None
    dense = copy.deepcopy(ours)
    row_adam = RowAdam(ours.parameters(), ours.embedding, lr=1e-2)
    adam = torch.optim.Adam(dense.parameters(), lr=1e-2, foreach=True)
    generator = torch.Generator().manual_seed(1)
    for step in range(25):
        # early rows keep drifting on momentum after they leave the batches; new rows keep arriving
        ids = torch.randint(0, 40 + 30 * step, (6, 7), generator=generator)
        for model, optimizer in ((ours, row_adam), (dense, adam)):
            optimizer.zero_grad()
            model(ids).backward()
            optimizer.step()
    for (name, mine), (_, theirs) in zip(ours.state_dict().items(), dense.state_dict().items(), strict=True):
        assert torch.equal(mine, theirs), name
    untouched = torch.ones(5000, dtype=torch.bool)
    untouched[row_adam.active] = False
    assert untouched.sum() > 4000 and row_adam.n_active_rows < 1000


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    first = _Bag()
    second = copy.deepcopy(first)
    optimizer = RowAdam(first.parameters(), first.embedding, lr=1e-2)
    ids = [torch.randint(0, 300, (4, 5), generator=torch.Generator().manual_seed(step)) for step in range(6)]
    for batch in ids[:3]:
        optimizer.zero_grad()
        first(batch).backward()
        optimizer.step()
    second.load_state_dict(first.state_dict())
    restored = RowAdam(second.parameters(), second.embedding, lr=1e-2)
    restored.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    for batch in ids[3:]:
        for model, opt in ((first, optimizer), (second, restored)):
            opt.zero_grad()
            model(batch).backward()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True))


@pytest.mark.parametrize("sparse_grad", [True, False])
def test_simcse_steps_on_a_tiny_bert_match_dense_adam(tmp_path, sparse_grad):
    """The real model and loss: sparse or dense embedding gradients, RowAdam vs torch Adam.

    The optimizer itself is bit-exact (above); a sparse embedding gradient sums the contributions
    of a repeated token ([CLS] in every sentence) in another order than the dense one, and Adam's
    m / sqrt(v) magnifies that rounding where a gradient is near zero, hence 2% of one lr step.
    """
    from stseval.methods.simcse import build_loss, build_simcse_model

    folder = make_bert(tmp_path / "bert")
    texts = ["今天天气很好", "我喜欢吃苹果", "花呗怎么还款", "信用额度为何会被降低"]
    models = []
    for use_row_adam in (True, False):
        torch.manual_seed(0)
        model = build_simcse_model(folder, "cls", 0.0, 16, device="cpu")
        loss_fn = build_loss(model, "su")
        embedding = model[0].auto_model.get_input_embeddings()
        optimizer = (RowAdam(model.parameters(), embedding, lr=1e-3, sparse_grad=sparse_grad) if use_row_adam
                     else torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True))
        for _ in range(4):
            features = model.preprocess(texts)
            loss = loss_fn([features, dict(features)], None)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        models.append(model)
    for (name, mine), (_, theirs) in zip(models[0].state_dict().items(), models[1].state_dict().items(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=2e-5 if sparse_grad else 1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")
