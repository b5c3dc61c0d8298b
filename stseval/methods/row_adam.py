"""Adam that updates only the word-embedding rows that have ever had a gradient: dense Adam's weights, less work.

Why: 96M of multilingual-e5-small's 118M parameters are its 250k-row word embedding, and a batch of 64
Chinese sentences touches a few hundred rows. Dense Adam reads and writes all 96M weights, their
gradient and both moment buffers every step (a quarter of a SimCSE step on this CPU, and 1.1 GB of
state). With weight decay 0, a row whose gradient has always been zero has exp_avg = exp_avg_sq = 0,
so dense Adam moves it by lr * 0 / (0 + eps) = 0: skipping it gives the same weights. A row that has
had a gradient once keeps moving on momentum afterwards, so this optimizer keeps updating every row
it has ever seen ("active" rows), not only the batch's (that would be LazyAdam/SparseAdam, other math).

How: the embedding gives sparse gradients (`nn.Embedding(sparse=True)`); the moment buffers exist only
for active rows (compact, appended as new rows appear); each step gathers the active rows, runs
torch's own functional Adam on them (`torch.optim.adam.adam`, so the arithmetic is torch's), and
scatters them back. The other parameters use `torch.optim.Adam(foreach=True)`.
tests/test_row_adam.py shows the weights equal dense `torch.optim.Adam` on a tiny model.

Example:
    >>> optimizer = RowAdam(model.parameters(), embedding=bert.get_input_embeddings(), lr=1e-5)
    >>> loss.backward(); optimizer.step(); optimizer.zero_grad()
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.adam import adam as functional_adam


class RowAdam:
    """Adam (no weight decay, no amsgrad) with active-row updates for one embedding; see the module docstring.

    Args:
        params: every trainable parameter, the embedding's weight included (it is split off here).
        embedding: the nn.Embedding whose rows are updated lazily-but-exactly; it is switched to
            sparse gradients.
        lr, betas, eps: as torch.optim.Adam (defaults equal the Hugging Face trainer's AdamW).
        sparse_grad: switch the embedding to sparse gradients (False under DistributedDataParallel,
            which all-reduces dense gradients; the rows with a nonzero gradient are found instead).
    """

    def __init__(self, params: Iterable[nn.Parameter], embedding: nn.Embedding, lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, sparse_grad: bool = True) -> None:
        self.embedding = embedding
        self.weight = embedding.weight
        embedding.sparse = sparse_grad
        dense = [p for p in params if p.requires_grad and p is not self.weight]
        self.dense = torch.optim.Adam(dense, lr=lr, betas=betas, eps=eps, foreach=True) if dense else None
        self.lr, self.betas, self.eps = lr, betas, eps
        rows, dim = self.weight.shape
        device = self.weight.device  # the bookkeeping lives beside the weights (index ops need one device)
        self.active = torch.empty(0, dtype=torch.long, device=device)  # rows that ever had a gradient, in order
        self.position = torch.full((rows,), -1, dtype=torch.long, device=device)  # row -> index into active, or -1
        self.exp_avg = torch.zeros(0, dim, dtype=self.weight.dtype, device=device)
        self.exp_avg_sq = torch.zeros(0, dim, dtype=self.weight.dtype, device=device)
        self.steps = 0

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step for every parameter (call after backward)."""
        if self.dense is not None:
            self.dense.step()
        self.steps += 1
        grad = self.weight.grad
        if grad is not None and grad.is_sparse:
            grad = grad.coalesce()
            rows, values = grad.indices()[0], grad.values()
        elif grad is not None:  # a dense gradient (e.g. sparse switched off by DDP): its nonzero rows
            rows = grad.abs().sum(dim=1).nonzero().squeeze(1)
            values = grad[rows]
        else:
            rows = torch.empty(0, dtype=torch.long, device=self.weight.device)
            values = torch.empty(0, self.weight.shape[1], device=self.weight.device)
        self._activate(rows)
        if self.active.numel() == 0:
            return
        active_grad = torch.zeros_like(self.exp_avg)
        active_grad.index_add_(0, self.position[rows], values.to(active_grad.dtype))
        active_weight = self.weight.index_select(0, self.active)
        step = torch.tensor(float(self.steps - 1))  # functional adam increments it before use
        functional_adam([active_weight], [active_grad], [self.exp_avg], [self.exp_avg_sq], [], [step],
                        foreach=True, amsgrad=False, beta1=self.betas[0], beta2=self.betas[1], lr=self.lr,
                        weight_decay=0.0, eps=self.eps, maximize=False)
        self.weight.index_copy_(0, self.active, active_weight)

    def _activate(self, rows: torch.Tensor) -> None:
        """Give rows seen for the first time zero moments at the end of the active list."""
        new = rows[self.position[rows] < 0]
        if new.numel() == 0:
            return
        self.position[new] = torch.arange(self.active.numel(), self.active.numel() + new.numel(),
                                          device=self.position.device)
        self.active = torch.cat([self.active, new])
        zeros = torch.zeros(new.numel(), self.exp_avg.shape[1], dtype=self.exp_avg.dtype, device=self.exp_avg.device)
        self.exp_avg = torch.cat([self.exp_avg, zeros])
        self.exp_avg_sq = torch.cat([self.exp_avg_sq, zeros])

    def zero_grad(self) -> None:
        if self.dense is not None:
            self.dense.zero_grad(set_to_none=True)
        self.weight.grad = None

    def state_dict(self) -> dict:
        """Tensors and numbers only (loadable with torch.load(weights_only=True))."""
        return {"dense": self.dense.state_dict() if self.dense is not None else {}, "active": self.active,
                "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        if self.dense is not None:
            self.dense.load_state_dict(state["dense"])
        device = self.weight.device  # a checkpoint saved on another device (a GPU run resumed on a CPU, ...)
        self.active = state["active"].to(device=device, dtype=torch.long)
        self.position.fill_(-1)
        self.position[self.active] = torch.arange(self.active.numel(), device=device)
        self.exp_avg, self.exp_avg_sq = state["exp_avg"].to(device), state["exp_avg_sq"].to(device)
        self.steps = int(state["steps"])

    @property
    def n_active_rows(self) -> int:
        return int(self.active.numel())
