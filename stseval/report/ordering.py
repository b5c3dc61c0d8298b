"""The order grids, plots and seed tables show things in: tasks, poolings, methods, splits, dims.

Known values come in their registry order (tasks in `TASKS` order, poolings in `options.POOLINGS` order with
layer-avg:N after them by N, methods and splits as listed here, dims "full" first and then largest); any
other value follows, sorted as text. Every report module sorts with `order_key` / `in_order`, so a grid's
rows and columns, a plot's legend and a seed table agree.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from stseval.common.settings import Pooling
from stseval.data.tasks import TASKS
from stseval.options import POOLINGS

TASK_ORDER: tuple[str, ...] = tuple(TASKS)
POOLING_ORDER = POOLINGS  # from options, which (unlike stseval.encoders.pooling) does not load torch
METHOD_ORDER = ("raw", "whitening", "whitening-unnormalized", "simcse", "simcse+whitening", "raw-truncate", "pca",
                "whitening-chosen", "pca-chosen", "raw-truncate-chosen")
SPLIT_ORDER = ("train", "valid", "test")
_KNOWN_ORDER = {"task": TASK_ORDER, "pooling": POOLING_ORDER, "method": METHOD_ORDER, "split": SPLIT_ORDER}


def order_key(column: str, value: str) -> tuple:
    """Sort key: known orders first (tasks, poolings, methods, splits; dims full, then largest), then text."""
    known = _KNOWN_ORDER.get(column, ())
    if value in known:
        return (0, float(known.index(value)), "", value)
    layer = row_layer(value) if column == "pooling" else None
    if layer is not None:  # layer-avg:N after the other poolings, by N
        return (0, float(len(known) + layer), "", value)
    if column == "dims" and (value == "full" or value.isdigit()):
        return (0, float("-inf") if value == "full" else -float(value), "", value)
    return (1, 0.0, value.lower(), value)


def row_layer(pooling: object) -> int | None:
    """N of a row's 'layer-avg:N' pooling text, else None (any other pooling, a legacy or foreign name): how the
    report reads a row's pooling, through `Pooling.read`, the lenient reader of the text `str(pooling)` wrote."""
    value = Pooling.read(pooling)
    return None if value is None else value.layer


def in_order(column: str, values) -> list[str]:
    return sorted(values, key=lambda value: order_key(column, value))


def sorted_keys(cells: pd.DataFrame, keys: list[str],
                 task_order: Sequence[str] | None = None) -> list[tuple[str, ...]]:
    """The distinct key tuples of the rows, sorted key by key; tasks named in task_order come first, in that order."""
    tuples = set(map(tuple, cells[keys].to_numpy().tolist()))
    first = {task: position for position, task in enumerate(task_order or ())}

    def key_of(column: str, value: str) -> tuple:
        if column == "task" and value in first:
            return (-1, float(first[value]), "", value)
        return order_key(column, value)

    return sorted(tuples, key=lambda t: tuple(key_of(k, v) for k, v in zip(keys, t, strict=True)))
