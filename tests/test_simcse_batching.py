"""Length-sorted chunks (stseval/methods/simcse/batching.py): every row once, little padding."""

from __future__ import annotations

from stseval.methods.simcse.batching import length_sorted_chunks


def test_length_sorted_chunks_cover_every_row_once_and_pad_little():
    lengths = [5, 40, 7, 7, 33, 12, 64, 3] * 16
    groups = length_sorted_chunks(lengths, token_budget=256, min_rows=4)
    rows = [row for group, _ in groups for row in group]
    assert sorted(rows) == list(range(len(lengths)))
    assert all(width == max(lengths[row] for row in group) for group, width in groups)
    assert all(len(group) * width <= max(256, 4 * width) for group, width in groups)
    assert sum(len(group) * width for group, width in groups) < 0.7 * len(lengths) * max(lengths)
