"""RowAdam (stseval/row_adam.py) gives dense Adam's weights while updating only embedding rows ever touched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from stseval.common.settings import Dropout, Pooling
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


def test_weights_equal_dense_adam_bit_for_bit_when_rows_come_and_go(pinned_torch):
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


def test_state_dict_round_trip_continues_identically(pinned_torch):
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


# Both runs sum the gradient of a repeated token's embedding row ([CLS] in every sentence) from its
# n <= 2 views x 4 sentences x 12 tokens = 96 contributions. With a dense gradient both optimizers see
# the same summed tensor, and RowAdam runs torch's own Adam arithmetic on it: bit-identical.
# A sparse gradient is summed in another order when coalesced, and recursive summation of n terms
# errs by at most (n - 1) * u * sum|g_i| (Higham, Accuracy and Stability, eq. 4.4). Adam's step
# lr * m / (sqrt(v) + eps) changes by at most lr / eps = 1e5 times a change of its gradient, so in
# float32 (u = 6e-8) a near-zero gradient's rounding can move a weight by ~2% of lr (2.4e-5 seen on
# an AVX-512 CPU, 6.8e-6 on AVX2): no tolerance both catches a bug and holds on every CPU. In float64
# (u = 1.1e-16), with contributions of the size of the summed gradients (|g| <= GRAD_BOUND, asserted),
# each step differs by at most lr / eps * 95 * u * 96 * GRAD_BOUND = 1e5 * 95 * 1.1e-16 * 96 * 0.1
# < 1.1e-8; four steps < 4.5e-8 (seen: 1e-14). A real RowAdam bug (a row skipped, a wrong step count
# or bias correction) moves a weight by a good part of lr = 1e-3 (7.9e-4 with the step count off by
# one), four orders of magnitude above that bound.
FLOAT64_ATOL = 4.5e-8
GRAD_BOUND = 0.1


@pytest.mark.parametrize("sparse_grad", [True, False])
def test_simcse_steps_on_a_tiny_bert_match_dense_adam(tmp_path, sparse_grad, pinned_torch):
    """The real model and loss: sparse or dense embedding gradients, RowAdam vs torch Adam.

    Float64 for the sparse gradient, float32 (bit-identical) for the dense one; bounds above.
    """
    from stseval.methods.simcse.loss import build_loss
    from stseval.methods.simcse.model import build_simcse_model

    dtype = torch.float64 if sparse_grad else torch.float32
    folder = make_bert(tmp_path / "bert")
    texts = ["今天天气很好", "我喜欢吃苹果", "花呗怎么还款", "信用额度为何会被降低"]
    models = []
    for use_row_adam in (True, False):
        torch.manual_seed(0)
        model = build_simcse_model(folder, Pooling("cls"), Dropout(0.0), 16, device="cpu").to(dtype)
        loss_fn = build_loss(model, "su")
        embedding = model[0].auto_model.get_input_embeddings()
        optimizer = (RowAdam(model.parameters(), embedding, lr=1e-3, sparse_grad=sparse_grad) if use_row_adam
                     else torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True))
        for _ in range(4):
            features = model.preprocess(texts)
            assert features["input_ids"].numel() <= 4 * 12  # the n of the bound above (two views of each)
            loss = loss_fn([features, dict(features)], None)
            optimizer.zero_grad()
            loss.backward()
            if not use_row_adam:  # dense gradients: the largest entry bounds the contributions of the bound
                assert max(p.grad.abs().max().item() for p in model.parameters() if p.grad is not None) <= GRAD_BOUND
            optimizer.step()
        models.append(model)
    for (name, mine), (_, theirs) in zip(models[0].state_dict().items(), models[1].state_dict().items(), strict=True):
        assert mine.dtype == theirs.dtype and (mine.dtype == dtype or not mine.is_floating_point()), name
        if sparse_grad:
            torch.testing.assert_close(mine, theirs, rtol=0, atol=FLOAT64_ATOL, msg=lambda m, name=name: f"{name}: {m}")
        else:
            assert torch.equal(mine, theirs), name
