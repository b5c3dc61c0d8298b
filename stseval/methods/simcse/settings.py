"""The settings of a training run: `SimcseSettings`, what the shared loop reads (`LoopSettings`), and their checks.

CoSENT (`stseval.methods.cosent.CosentSettings`) runs through the same loop, so the checks both need
(`check_loop_settings`: pooling, dropout, integer counts, learning rate, precision) live here once; each
names its option (`--dropout: ...`), as the CLI prints it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from stseval.common.errors import StsevalError
from stseval.encoders.pooling import POOLINGS
from stseval.encoders.precision import PRECISIONS
from stseval.options import check_at_least, check_learning_rate, check_loss

LOSSES: tuple[str, ...] = ("su", "princeton", "cached")
"""`--loss` choices; see `stseval.methods.simcse.loss`."""


class LoopSettings(Protocol):
    """The settings the training loop reads (SimcseSettings and methods.cosent.CosentSettings have them)."""

    pooling: str
    dropout: float
    batch_size: int
    learning_rate: float
    epochs: int
    max_length: int
    seed: int
    checkpoint_steps: int
    precision: str  # "fp32" or "bf16" (forward and loss under autocast)


@dataclass
class SimcseSettings:
    """Everything one SimCSE training run depends on besides the base model and the sentences.

    Defaults follow Su: batch 64 sentences (64 pairs), AdamW without weight decay (= Adam) at a
    constant learning rate 1e-5 without gradient clipping, 1 epoch, dropout 0.1, 64 tokens (128
    for PAWSX), float32.
    """

    pooling: str = "cls"
    dropout: float = 0.1
    loss: str = "su"
    batch_size: int = 64
    learning_rate: float = 1e-5
    epochs: int = 1
    max_length: int = 64
    seed: int = 0
    prefix: str = ""  # prepended to every training sentence, e.g. "query: " for E5
    checkpoint_steps: int = 100  # a checkpoint every N steps (resume point)
    mini_batch_size: int = 32  # forward chunk of the cached loss
    precision: str = "fp32"  # bf16: forward and loss under torch.autocast; weights and Adam stay float32

    def validate(self) -> None:
        """Raise StsevalError naming the option of the first bad setting."""
        check_loop_settings(self, loss=self.loss, more_counts=(("--mini-batch-size", self.mini_batch_size, 1),))


def check_pooling(pooling: str) -> str:
    """Return pooling if it is one of `POOLINGS`, else raise StsevalError naming --pooling."""
    if pooling not in POOLINGS:
        raise StsevalError(f"--pooling: unknown pooling {pooling!r}; choose from {', '.join(POOLINGS)}")
    return pooling


def check_dropout(dropout: float) -> float:
    """Return dropout if it is a probability in [0, 1), else raise StsevalError naming --dropout."""
    if not isinstance(dropout, (int, float)) or not 0.0 <= float(dropout) < 1.0:
        raise StsevalError(f"--dropout: {dropout!r} is outside [0, 1); Su used 0.1 and 0.3")
    return float(dropout)


def check_loop_settings(settings: LoopSettings, loss: str | None = None,
                        more_counts: Sequence[tuple[str, int, int]] = ()) -> None:
    """Raise StsevalError naming the option of the first bad setting the training loop reads.

    Checked in this order: --pooling, --dropout, --loss (when `loss` is given: SimCSE's), the counts
    (--batch-size >= 2, --epochs >= 1, --max-length >= 2, --checkpoint-steps >= 1, then `more_counts`,
    each (option, value, lowest)), --lr > 0, --precision.
    """
    check_pooling(settings.pooling)
    check_dropout(settings.dropout)
    if loss is not None:
        check_loss(loss)
    check_at_least([("--batch-size", settings.batch_size, 2), ("--epochs", settings.epochs, 1),
                    ("--max-length", settings.max_length, 2), ("--checkpoint-steps", settings.checkpoint_steps, 1),
                    *more_counts])
    check_learning_rate(settings.learning_rate)
    if settings.precision not in PRECISIONS:
        raise StsevalError(f"--precision {settings.precision}: unknown; choose from {', '.join(PRECISIONS)}")
