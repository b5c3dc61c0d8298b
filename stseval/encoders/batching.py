"""Batch plans that make a sentence's vector independent of its batch-mates: numpy only, no model.

Every forward pass of a transformer `Encoder` has a fixed shape: its sentences share one padded width,
a function of each sentence's own token length (`bucket_widths`, or `query_widths` on the query path),
and the batch is filled up with copies to exactly `rows` rows (`fill_rows`). Batches of another row
count or width change the float rounding by ~1e-6, and full-dimension whitening magnifies that in its
small-variance directions, so cells of one cache key could otherwise differ by ~4e-4.

Example:
    >>> widths = bucket_widths(np.array([12, 17, 33]))      # [12, 18, 36]
    >>> invariant_batches(widths, rows=32)                  # [array([2]), array([1]), array([0])]
    >>> fill_rows(np.array([2]), 4)                         # [2, 2, 2, 2]
"""

from __future__ import annotations

import numpy as np

INVARIANT_BATCH_ROWS = 32
"""Sentences per forward pass (fewer when --batch-size is smaller), always exactly this many
rows of one padded width: see `invariant_batches`. 32 rather than 64 wastes less on the fill
copies of each width's last batch."""
QUERY_ROWS = 2
"""Rows of every forward pass on the query path (`encode(..., query=True)`), filled with copies up to it.
A fixed shape per sentence is what makes a vector independent of its batch-mates; a small one keeps a single
query cheap. Measured (benchmarks/query.py, e5-small, 1 thread, side by side): 1 sentence 1.07x a bare forward,
20 short ones 1.75x a bare padded batch; 4 rows gave 1.86x and 1.45x."""
QUERY_WIDTH_STEP = 4
"""On the query path every sentence is padded to its token length rounded up to a multiple of this, so
short queries of nearby lengths share forward passes."""


def bucket_widths(lengths: np.ndarray) -> np.ndarray:
    """The padded width of each sentence, a function of its own token length only: exact up to 16
    tokens, then rounded up to a multiple of 1/8 of the length's power of two (at most 12.5% padding).

    (n,) int64 lengths -> (n,) int64 widths, e.g. 12 -> 12, 17 -> 18, 33 -> 36, 100 -> 104.
    """
    step = np.where(lengths <= 16, 1, 2 ** np.maximum(np.floor(np.log2(np.maximum(lengths, 1))) - 3, 0))
    return (np.ceil(lengths / step) * step).astype(np.int64)


def query_widths(lengths: np.ndarray) -> np.ndarray:
    """The query path's padded width of each sentence: its token length rounded up to QUERY_WIDTH_STEP."""
    return (np.ceil(lengths / QUERY_WIDTH_STEP) * QUERY_WIDTH_STEP).astype(np.int64)


def invariant_batches(widths: np.ndarray, rows: int) -> list[np.ndarray]:
    """Row groups of one padded width each, widest first, at most `rows` per group.

    Every batch is then filled to exactly `rows` rows (`fill_rows`), so each forward pass has the
    shape (rows, width) and a sentence's own padding depends on its length alone: its vector is
    the same whichever other sentences share its batch (see the module docstring).
    """
    order = np.argsort(-widths, kind="stable")
    batches: list[np.ndarray] = []
    for width in np.unique(widths)[::-1]:
        same = order[widths[order] == width]
        batches.extend(same[start : start + rows] for start in range(0, len(same), rows))
    return batches


def fill_rows(batch_rows: np.ndarray, rows: int) -> np.ndarray:
    """batch_rows followed by copies of its first row, `rows` in all (the copies' vectors are dropped)."""
    return np.concatenate([batch_rows, np.full(rows - len(batch_rows), batch_rows[0])])
