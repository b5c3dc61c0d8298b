"""The settings of a training run: `SimcseSettings`, what the shared loop reads (`LoopSettings`), and their checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from stseval.common.errors import StsevalError
from stseval.encoders.pooling import POOLINGS
from stseval.encoders.precision import PRECISIONS

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
        check_pooling(self.pooling)
        check_dropout(self.dropout)
        if self.loss not in LOSSES:
            raise StsevalError(f"--loss: unknown loss {self.loss!r}; choose from {', '.join(LOSSES)}")
        for option, value, low in (("--batch-size", self.batch_size, 2), ("--epochs", self.epochs, 1),
                                   ("--max-length", self.max_length, 2),
                                   ("--checkpoint-steps", self.checkpoint_steps, 1),
                                   ("--mini-batch-size", self.mini_batch_size, 1)):
            if not isinstance(value, int) or value < low:
                raise StsevalError(f"{option}: {value!r} must be an integer of at least {low}")
        if not self.learning_rate > 0:
            raise StsevalError(f"--lr: {self.learning_rate!r} must be positive")
        if self.precision not in PRECISIONS:
            raise StsevalError(f"--precision {self.precision}: unknown; choose from {', '.join(PRECISIONS)}")


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

