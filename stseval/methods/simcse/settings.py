"""The settings of a training run: `SimcseSettings`, what the shared loop reads (`LoopSettings`), and their checks.

CoSENT (`stseval.methods.cosent.CosentSettings`) runs through the same loop, so the checks both need
(`check_loop_settings`: pooling, dropout, integer counts, learning rate, precision) live here once; each
names its option (`--dropout: ...`), as the CLI prints it.

The pooling and the dropout are values (`stseval.common.settings.Pooling` / `Dropout`), parsed once where
the option was read; a `Dropout` is in [0, 1) by construction, so nothing here re-checks a rate or reads a
name. What is left to check is what the trainers need of the values: a token pooling (not `sentence`, not
layer-avg:N). `settings_identity` writes them back as the run folder's identity.json holds them: the
pooling's name and the rate as a float.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol

from stseval.common.errors import StsevalError
from stseval.common.settings import POOLINGS, Dropout, Pooling
from stseval.options import PRECISIONS, SIMCSE_LOSSES, check_at_least, check_learning_rate, check_loss

LOSSES: tuple[str, ...] = SIMCSE_LOSSES
"""`--loss` choices (their one home is `stseval.options.SIMCSE_LOSSES`); see `stseval.methods.simcse.loss`."""


class LoopSettings(Protocol):
    """The settings the training loop reads (SimcseSettings and methods.cosent.CosentSettings have them)."""

    pooling: Pooling
    dropout: Dropout
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

    pooling: Pooling = Pooling("cls")
    dropout: Dropout = Dropout(0.1)
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


def check_trainable(pooling: object, dropout: object) -> None:
    """Refuse what the trainers cannot take: a pooling that is not a token pooling value (`sentence` and
    layer-avg:N are for evaluation only), a dropout that is not a `Dropout` value; each names its option."""
    if isinstance(pooling, str) and pooling in POOLINGS:  # a Python caller's name: say what to give instead
        raise StsevalError(f"--pooling: {pooling!r} is text, not a Pooling value; give Pooling({pooling!r}) "
                           "(Pooling.parse reads option text)")
    if not isinstance(pooling, Pooling) or pooling.kind not in POOLINGS:
        raise StsevalError(f"--pooling: unknown pooling {str(pooling)!r}; choose from {', '.join(POOLINGS)}")
    if not isinstance(dropout, Dropout):  # a Dropout is in [0, 1) by construction
        if isinstance(dropout, (int, float)) and not isinstance(dropout, bool):
            Dropout(dropout)  # the one range check: a bare rate outside [0, 1) gets --dropout's own message
        raise StsevalError(f"--dropout: {dropout!r} is not a Dropout value; read option text with Dropout.parse")


def settings_identity(settings: LoopSettings) -> dict:
    """The settings as a run folder's identity.json records them: every field, the pooling as its name
    (`str`, the one formatter) and the dropout as its rate, so folders written before the values resume."""
    return {**asdict(settings), "pooling": str(settings.pooling), "dropout": settings.dropout.rate}  # type: ignore[call-overload]


def check_loop_settings(settings: LoopSettings, loss: str | None = None,
                        more_counts: Sequence[tuple[str, int, int]] = ()) -> None:
    """Raise StsevalError naming the option of the first bad setting the training loop reads.

    Checked in this order: --pooling, --dropout, --loss (when `loss` is given: SimCSE's), the counts
    (--batch-size >= 2, --epochs >= 1, --max-length >= 2, --checkpoint-steps >= 1, then `more_counts`,
    each (option, value, lowest)), --lr > 0, --precision.
    """
    check_trainable(settings.pooling, settings.dropout)
    if loss is not None:
        check_loss(loss)
    check_at_least([("--batch-size", settings.batch_size, 2), ("--epochs", settings.epochs, 1),
                    ("--max-length", settings.max_length, 2), ("--checkpoint-steps", settings.checkpoint_steps, 1),
                    *more_counts])
    check_learning_rate(settings.learning_rate)
    if settings.precision not in PRECISIONS:
        raise StsevalError(f"--precision {settings.precision}: unknown; choose from {', '.join(PRECISIONS)}")
