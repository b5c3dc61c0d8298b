"""Wide grids from long-format result rows: the pivot, with its row keys, averages and intervals.

A grid is a view of results rows: one row per (model, pooling, method, dims, ...), one column per task
in `TASKS` order plus the plain `avg` and the pair-weighted `w-avg`, each cell the metric x 100 rounded
to two decimals. Grids are written for people to read, paste and diff; they are never read back as a
source. Each step is a plain function:

    load_results -> apply_filters -> resolve_duplicates -> build_grid

The steps before the pivot live in modules of their own, imported here too so `from stseval.report.grids
import load_results` keeps working: `rows` (read, filter, resolve and type the rows), `ordering` (the order
of tasks, poolings, methods, splits and dims) and `references` (the published tables put beside ours).

These four are the upstream end of stseval.report; the others import them, never the other way round:
`provenance` (how a grid was produced), `tables` (the grid as CSV and markdown text), `heatmap` (a grid's
PNG pages), `drawing` (training-curve and sweep PNGs), `seeds` (mean +- sd over seeds), `plots` (the
whitening studies' plots) and `write` (`write_report` and `write_run_grid`, which run the chain and write the
files).

Example:
    >>> frame = resolve_duplicates(load_results(["results/whitening"]))
    >>> grid = build_grid(frame, reference=["su2021:BERT"])
    >>> print(tables.grid_to_markdown(grid, best=True))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from stseval.common.errors import StsevalError
from stseval.common.lists import comma_parts
from stseval.report.ordering import (
    METHOD_ORDER,
    POOLING_ORDER,
    SPLIT_ORDER,
    TASK_ORDER,
    in_order,
    order_key,
    sorted_keys,
)
from stseval.report.references import (
    MAP_REFERENCES,
    REFERENCE_DIR,
    REFERENCE_METRIC,
    REFERENCES,
    reference_rows,
)
from stseval.report.rows import (
    FIT_ON_TRAINING_SENTENCES,
    SOURCE_COLUMNS,
    VARIANT_OF,
    apply_filters,
    as_text,
    check_consistent,
    describe_cell,
    group_settings,
    load_results,
    normalized_rows,
    resolve_duplicates,
    select_rows,
    separate_variants,
    version_parts,
)
from stseval.runs.results import CELL_KEY

__all__ = [  # the names importers took from this module before rows / ordering / references split off
    "AVG", "CI_HIGH", "CI_LOW", "DEFAULT_COLS", "DEFAULT_ROWS", "EXPONENT_ROWS", "FIT_ON_TRAINING_SENTENCES",
    "MAP_REFERENCES", "METHOD_ORDER", "NA", "POOLING_ORDER", "REFERENCES", "REFERENCE_DIR", "REFERENCE_METRIC",
    "SOURCE_COLUMNS", "SPLIT_ORDER", "TASK_ORDER", "UNSCALED_METRICS", "VARIANT_OF", "VARYING_ROWS", "WEIGHTED_AVG",
    "apply_filters", "as_text", "build_grid", "check_consistent", "group_settings", "in_order", "load_results",
    "metric_scale", "normalized_rows", "order_key", "parse_keys", "reference_rows", "resolve_duplicates",
    "select_rows", "separate_variants", "version_parts",
]

DEFAULT_ROWS = ("model", "pooling", "method", "dims")
VARYING_ROWS = ("fit_on", "train_on", "prefix", "dropout", "loss", "batch_size", "learning_rate", "epochs", "seed")
# ^ row keys only where they take several values (a grid of several seeds gets a seed column)
EXPONENT_ROWS = ("beta", "gamma")
# ^ row keys only where whitened rows differ in them: "" (not whitened) beside "1" is no reason for a column
DEFAULT_COLS = ("task",)
AVG, WEIGHTED_AVG = "avg", "w-avg"
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"  # suffixes of the interval columns `--ci` adds after each task
NA = "n/a"
UNSCALED_METRICS = ("qps", "build_s", "index_bytes")
"""Metrics that are counts or rates, not fractions: grids show them as recorded, not x 100."""


def metric_scale(metric: str) -> int:
    """What a grid multiplies a metric by: 100 for fractions (Spearman, recall@10 -> x 100), 1 for qps & co."""
    return 1 if metric in UNSCALED_METRICS else 100


# ---------------------------------------------------------------------------------------------- grid


def build_grid(
    frame: pd.DataFrame,
    rows: Sequence[str] | None = None,
    cols: Sequence[str] = DEFAULT_COLS,
    metric: str = "spearman_cosine",
    split: str | None = "test",
    ci: bool = False,
    reference: Sequence[str] | None = None,
    scale: float | None = None,
    task_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Pivot long rows into the wide grid people paste into papers.

    Args:
        frame: long-format rows with at most one row per grid cell (run resolve_duplicates first when
            the rows come from several runs), e.g. `rows_to_frame(rows)` or `load_results(paths)`.
        rows: row keys; None means model, pooling, method, dims, then those of fit_on, train_on,
            prefix, dropout (and split, with split="all") that take more than one value.
        cols: column keys; with the default ("task",) the columns are the tasks in TASKS order followed
            by `avg` (plain mean over the tasks) and `w-avg` (weighted by n_pairs). Several keys give
            columns named "A/B" and no averages.
        metric: the metric to show, e.g. "spearman_cosine" or "recall@10".
        split: the split to show; "all" (or None) keeps every split.
        ci: add `<column>_ci_low` / `<column>_ci_high` after each column, from the rows' bootstrap
            interval.
        reference: published tables to put beside our rows: "su2021", "mteb", or "su2021:BERT,SimBERT"
            for some of their models. Their rows are labelled `Su2021:BERT` etc. in the model column
            and sit right after our last row with the same pooling, method and dims.
        scale: multiply values by this; None: metric_scale(metric) (Spearman x 100, qps as recorded).
        task_order: task columns in this order (e.g. the command's --tasks); tasks not named
            follow in TASKS order. None: TASKS order.
    Returns:
        DataFrame indexed by the row keys (rows in TASKS / pooling / method order, dims "full" first),
        one float column per task (value x scale rounded to 2 decimals; NaN where no row), where a row's
        status is not "ok" the cell holds the status text instead, e.g. "n/a" or "undefined" (a Spearman
        of constant labels or vectors); averages are blank unless every task has a number, the status
        where the gaps are all cells of that status ("n/a" where they are of several).
    Raises:
        StsevalError when the metric or split has no rows, data checksums are mixed, a key is unknown,
        or two rows fall into one cell (naming the columns they differ in).
    """
    ours = group_settings(normalized_rows(separate_variants(select_rows(frame, metric, split))))
    check_consistent(ours)
    cols = list(cols)
    row_keys = _row_keys(ours, rows, cols, split)
    _check_keys(ours, row_keys, cols)
    cells = _with_reference(ours, reference, metric, split, row_keys + cols)
    _check_one_row_per_cell(cells, row_keys + cols)
    cells = _cell_fields(cells, metric_scale(metric) if scale is None else scale)
    order, is_ours = _row_order(cells, row_keys)
    index = pd.MultiIndex.from_tuples(order, names=row_keys) if len(row_keys) > 1 else pd.Index(
        [key[0] for key in order], name=row_keys[0])
    column_keys = sorted_keys(cells, cols, task_order)
    fields = _pivot(cells, row_keys, cols, index, column_keys)
    out = _grid_columns(fields, column_keys, ci)
    if cols == ["task"]:
        out[AVG], out[WEIGHTED_AVG] = _averages(fields["_value"], fields["_status"],
                                                _fill_weights(fields["_weight"], is_ours))
    return pd.DataFrame({name: list(column) for name, column in out.items()}, index=index)


def _check_keys(ours: pd.DataFrame, row_keys: list[str], cols: list[str]) -> None:
    """Raise naming --rows or --cols when a key is no column of the rows, none is given, or both share one."""
    for option, keys in (("--rows", row_keys), ("--cols", cols)):
        unknown = [key for key in keys if key not in ours.columns]
        if unknown or not keys:
            raise StsevalError(f"{option}: unknown column(s) {', '.join(unknown) or '(none given)'}; "
                               f"use results columns such as {', '.join(DEFAULT_ROWS)}, task, split")
    if set(row_keys) & set(cols):
        raise StsevalError(f"--rows and --cols share {', '.join(sorted(set(row_keys) & set(cols)))}")


def _with_reference(ours: pd.DataFrame, reference: Sequence[str] | None, metric: str, split: str | None,
                    keys: list[str]) -> pd.DataFrame:
    """Our rows, then the published rows of `reference` (if any); `_reference` tells them apart."""
    cells = ours.assign(_reference=False)
    if reference:
        if metric != REFERENCE_METRIC:
            raise StsevalError(f"--reference: published tables hold {REFERENCE_METRIC} only, not {metric}")
        published = normalized_rows(reference_rows(reference, ours, split))
        cells = pd.concat([cells, published.assign(_reference=True)], ignore_index=True)
        for key in keys:  # published rows lack run-only columns such as seed
            cells[key] = as_text(cells[key])
    return cells


_FIELDS = ("_value", "_status", "_low", "_high", "_weight")  # what _cell_fields adds and _pivot spreads out


def _cell_fields(cells: pd.DataFrame, scale: float) -> pd.DataFrame:
    """Add _FIELDS: value and interval x scale where the status is ok, the status text where not, pair weight."""
    ok = cells["status"].isin(["ok", ""])
    weights = cells["n_pairs"].where(cells["n_pairs"] > 0)
    return cells.assign(
        _value=cells["value"].where(ok) * scale, _status=cells["status"].where(~ok, ""),
        _low=cells["ci_low"].where(ok) * scale, _high=cells["ci_high"].where(ok) * scale, _weight=weights,
    )


def _pivot(cells: pd.DataFrame, row_keys: list[str], cols: list[str], index: pd.Index,
           column_keys: list[tuple[str, ...]]) -> dict[str, np.ndarray]:
    """Each of _FIELDS as an (n_rows, n_columns) array in grid order: float, status as text ("" where ok)."""
    columns = pd.MultiIndex.from_tuples(column_keys) if len(cols) > 1 else pd.Index([key[0] for key in column_keys])
    wide = cells.pivot(index=row_keys, columns=cols, values=list(_FIELDS)).reindex(index)
    fields: dict[str, np.ndarray] = {}
    for name in _FIELDS:
        field = cast(pd.DataFrame, wide[name])  # a top level of the column MultiIndex: a frame, not a Series
        fields[name] = field.reindex(columns=columns).to_numpy(  # writable under copy-on-write
            dtype=object if name == "_status" else float, copy=True)
    fields["_status"][pd.isna(fields["_status"])] = ""
    return fields


def _grid_columns(fields: dict[str, np.ndarray], column_keys: list[tuple[str, ...]], ci: bool) -> dict[str, list]:
    """The grid's columns by label ("ATEC", "A/B" for several keys): cells, and with ci each interval after it."""
    out: dict[str, list] = {}
    for j, column_key in enumerate(column_keys):
        label = "/".join(column_key)
        out[label] = _cells(fields["_value"][:, j], fields["_status"][:, j])
        if ci:
            out[label + CI_LOW], out[label + CI_HIGH] = _round(fields["_low"][:, j]), _round(fields["_high"][:, j])
    return out


def _row_keys(ours: pd.DataFrame, rows: Sequence[str] | None, cols: list[str], split: str | None) -> list[str]:
    """The row keys given, or the defaults plus the optional keys that vary in these rows."""
    if rows:
        return list(rows)
    keys = list(DEFAULT_ROWS) + [key for key in VARYING_ROWS if as_text(ours[key]).nunique() > 1]
    keys += [key for key in EXPONENT_ROWS if key in ours.columns and len(set(as_text(ours[key])) - {""}) > 1]
    if split in (None, "all") and as_text(ours["split"]).nunique() > 1 and "split" not in cols:
        keys.append("split")
    return [key for key in keys if key not in cols]


def _check_one_row_per_cell(cells: pd.DataFrame, keys: list[str]) -> None:
    """Raise when two rows share a grid cell, naming the columns that tell them apart."""
    clash = cells.duplicated(subset=keys, keep=False)
    if not clash.any():
        return
    first = cells.loc[clash, keys].iloc[0]
    group = cells[clash & (cells[keys] == first).all(axis=1)]
    differ = [c for c in CELL_KEY if c not in keys and as_text(group[c]).nunique() > 1]
    hint = (f"they differ in {', '.join(differ)}: add one to --rows or pick with --filter {differ[0]}=..."
            if differ else "they are re-runs of one result cell: resolve them with resolve_duplicates() first")
    raise StsevalError(f"{len(group)} rows fall into one grid cell ({describe_cell(first)}); {hint}")


def _row_order(cells: pd.DataFrame, row_keys: list[str]) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """Grid row keys: ours sorted, each published row right after our last row of its pooling/method/dims.

    Returns:
        the row key tuples, and a (n_rows,) bool array that is True for our rows.
    """
    ours = sorted_keys(cells[~cells["_reference"]], row_keys)
    published = sorted_keys(cells[cells["_reference"]], row_keys)
    match = [i for i, key in enumerate(row_keys) if key in ("pooling", "method", "dims")]
    last_of = {tuple(row[i] for i in match): position for position, row in enumerate(ours)}
    after: dict[int, list[tuple[str, ...]]] = {}
    for row in published:
        after.setdefault(last_of.get(tuple(row[i] for i in match), len(ours) - 1), []).append(row)
    order, is_ours = [], []
    for position, row in enumerate(ours):
        order.append(row)
        order.extend(after.get(position, []))
        is_ours += [True] + [False] * len(after.get(position, []))
    return order, np.array(is_ours, dtype=bool)


def _round(values: npt.ArrayLike) -> list[float]:
    return [float(v) for v in np.round(np.asarray(values, dtype=float), 2) + 0.0]  # + 0.0 turns -0.0 into 0.0


def _cells(values: np.ndarray, status: np.ndarray) -> list:
    """Rounded numbers, with the status text ("n/a") where a row's status is not ok."""
    return [text if text else number for number, text in zip(_round(values), status, strict=True)]


def _fill_weights(weights: np.ndarray, is_ours: np.ndarray) -> np.ndarray:
    """Pair counts per cell; a row without one (published rows) borrows the column's usual count."""
    filled = weights.copy()
    for j in range(weights.shape[1]):
        known = weights[is_ours, j]
        known = known[np.isfinite(known)]
        if known.size:
            counts = pd.Series(known).value_counts()
            usual = counts[counts == counts.max()].index.min()  # the most common; ties take the smaller
            filled[~np.isfinite(filled[:, j]), j] = usual
    return filled


def _averages(values: np.ndarray, status: np.ndarray, weights: np.ndarray) -> tuple[list, list]:
    """Plain and pair-weighted means over the task columns, per row; blank unless every task has a number."""
    plain, weighted = [], []
    for row_values, row_status, row_weights in zip(values, status, weights, strict=True):
        if np.isfinite(row_values).all():
            plain.append(row_values.mean())
            weighted.append(np.average(row_values, weights=row_weights) if np.isfinite(row_weights).all() else np.nan)
        else:
            gaps = {s for v, s in zip(row_values, row_status, strict=True) if not np.isfinite(v)}
            # gaps that are all one status (n/a, undefined) say it; mixed statuses say n/a; any empty gap: blank
            fill = np.nan if "" in gaps else gaps.pop() if len(gaps) == 1 else NA
            plain.append(fill)
            weighted.append(fill)
    return [_round([v])[0] if not isinstance(v, str) else v for v in plain], \
        [_round([v])[0] if not isinstance(v, str) else v for v in weighted]


def parse_keys(text: str | None) -> list[str] | None:
    """'model, pooling' -> ["model", "pooling"] for --rows / --cols; None or "" -> None."""
    keys = comma_parts(text)
    return keys or None
