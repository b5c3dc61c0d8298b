"""What `encode` needs from an encoder: texts -> vectors, a name, a fingerprint, supported poolings.

The transformer `Encoder` (stseval/encoders/encoder.py) satisfies this protocol, and so do encoders
that are not Hugging Face folders: Google's USE-multilingual v3 (`use_multilingual.py`) and
vectors computed elsewhere (`vectors.py`). `load_encoder` returns one of them; `encode` (dedupe,
cache, progress bar, cache shards every 4,096 sentences) and every run above it see only this
protocol, so a new encoder needs no change there. docs/ENCODERS.md describes how to add one.

Example:
    >>> from stseval.encoders.encoder import encode
    >>> class CharCounts:                    # a toy encoder: 8-d character code counts
    ...     name, fingerprint, dimension = "char-counts-8", "char-counts-8-v1", 8
    ...     def supports(self, pooling): return pooling == SENTENCE_POOLING
    ...     def embed_batches(self, texts, poolings, max_length, batch_size):
    ...         return fixed_batches(lambda batch: {SENTENCE_POOLING: np.stack(
    ...             [np.bincount([ord(c) % 8 for c in t], minlength=8) for t in batch]).astype(np.float32)},
    ...             texts, batch_size)
    >>> isinstance(CharCounts(), SentenceEncoder)
    True
    >>> encode(CharCounts(), ["今天天气很好"], SENTENCE_POOLING, max_length=64)[SENTENCE_POOLING].shape
    (1, 8)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from stseval.common.settings import POOLING_NAMES, SENTENCE_POOLING, Pooling  # noqa: F401 - names re-exported

Batch = tuple[np.ndarray, dict[str, np.ndarray]]
"""(rows, {pooling: (len(rows), d) float32}): vectors of texts[rows], as `embed_batches` yields them."""


@runtime_checkable
class SentenceEncoder(Protocol):
    """An encoder `stseval.encoders.encoder.encode` can run.

    Attributes:
        name: how results rows, grids and index metadata name the model, e.g. "use-multilingual-v3".
        fingerprint: sha256 over everything that decides a vector (weight files, tokenizer, and the
            version of any inference code that is not stseval's); results rows record it and the
            embedding cache is keyed by it, so vectors of changed weights are never reused.
        dimension: d, the length of every vector.
    """

    name: str
    fingerprint: str

    @property
    def dimension(self) -> int: ...

    def supports(self, pooling: str) -> bool:
        """Whether `pooling` (its name, `str(Pooling)`: one of `POOLING_NAMES` or layer-avg:N) is one of this
        encoder's outputs.

        Runs mark the cells of unsupported poolings n/a instead of encoding them; an encoder of
        sentence vectors only supports `SENTENCE_POOLING` alone.
        """
        ...

    def embed_batches(self, texts: Sequence[str], poolings: Sequence[str], max_length: int,
                      batch_size: int) -> Iterator[Batch]:
        """Vectors of every text, in batches of the encoder's choosing.

        Args:
            texts: n distinct sentences, any prefix already in front (`encode` deduplicates and
                adds it).
            poolings: names this encoder supports; each batch holds one array per name.
            max_length: token limit (a task's: 64, PAWSX 128); encoders without one ignore it.
            batch_size: the caller's batch size; an encoder may use fewer rows per batch.
        Yields:
            (rows, {pooling: (len(rows), d) float32}) until every row 0..n-1 was yielded once, in
            any order. A vector must depend on its text alone, not on the others in its batch.
        Raises:
            StsevalError before the first batch when a text cannot be encoded at all (e.g. a
            sentence missing from precomputed vectors).
        """
        ...


def fixed_batches(embed: Callable[[Sequence[str]], dict[str, np.ndarray]], texts: Sequence[str],
                  batch_size: int) -> Iterator[Batch]:
    """`embed_batches` for an encoder that turns a list of texts into {pooling: (n, d)} at once.

    Args:
        embed: texts -> {pooling: (len(texts), d) float32}.
        texts: the n texts, cut into consecutive batches of at most batch_size.
    Yields:
        (rows, vectors of texts[rows]) for each batch.
    """
    for start in range(0, len(texts), batch_size):
        stop = min(start + batch_size, len(texts))
        yield np.arange(start, stop), embed(texts[start:stop])


def can_pool(encoder: SentenceEncoder, pooling: Pooling) -> bool:
    """`encoder.supports` for a `Pooling` value: the protocol method takes the pooling's name (`str`, the one
    formatter), so encoders written elsewhere compare plain names ('sentence')."""
    return encoder.supports(str(pooling))


def supported_poolings(encoder: SentenceEncoder) -> list[str]:
    """The names of `POOLING_NAMES` the encoder supports, in grid order."""
    return [name for name in POOLING_NAMES if encoder.supports(name)]
