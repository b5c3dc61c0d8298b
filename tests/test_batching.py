"""encoders/batching.py: batch plans whose shape depends on each sentence's own length only."""

import numpy as np
import pytest

from stseval.encoders.batching import (
    INVARIANT_BATCH_ROWS,
    QUERY_WIDTH_STEP,
    bucket_widths,
    fill_rows,
    invariant_batches,
    query_widths,
)


def test_bucket_widths_are_exact_up_to_16_then_pad_at_most_an_eighth():
    lengths = np.arange(1, 600, dtype=np.int64)
    widths = bucket_widths(lengths)
    assert widths.dtype == np.int64
    np.testing.assert_array_equal(widths[:16], lengths[:16])
    assert (widths >= lengths).all() and (widths <= lengths * 1.125).all()
    assert bucket_widths(np.array([12, 17, 33, 100])).tolist() == [12, 18, 36, 104]  # the docstring's examples
    assert len(np.unique(widths)) < len(lengths) / 4  # few distinct widths: few distinct batch shapes


def test_query_widths_round_up_to_the_step():
    lengths = np.array([1, 4, 5, 8, 9, 31])
    assert query_widths(lengths).tolist() == [4, 4, 8, 8, 12, 32]
    assert (query_widths(np.arange(1, 200)) % QUERY_WIDTH_STEP == 0).all()


def test_invariant_batches_hold_one_width_each_widest_first():
    widths = np.array([8, 12, 8, 12, 12, 4, 8])
    batches = invariant_batches(widths, rows=2)
    assert [batch.tolist() for batch in batches] == [[1, 3], [4], [0, 2], [6], [5]]  # stable within a width
    assert all(len(set(widths[batch])) == 1 for batch in batches)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(widths)))  # every row exactly once


def test_a_rows_batch_does_not_depend_on_the_others():
    """Row 0's batch-mates change, its batch shape (rows x its own width) does not."""
    alone = invariant_batches(bucket_widths(np.array([20])), INVARIANT_BATCH_ROWS)
    crowd_lengths = np.array([20, 3, 50, 20, 7])
    crowd = invariant_batches(bucket_widths(crowd_lengths), INVARIANT_BATCH_ROWS)
    own = next(batch for batch in crowd if 0 in batch)
    assert len(fill_rows(own, INVARIANT_BATCH_ROWS)) == len(fill_rows(alone[0], INVARIANT_BATCH_ROWS))
    assert bucket_widths(crowd_lengths)[own].tolist() == [bucket_widths(np.array([20]))[0]] * len(own)


@pytest.mark.parametrize("rows", [1, 2, 5])
def test_fill_rows_pads_with_copies_of_the_first_row(rows):
    filled = fill_rows(np.array([7]), rows)
    assert filled.tolist() == [7] * rows
    assert fill_rows(np.array([3, 4]), 4).tolist() == [3, 4, 3, 3]
