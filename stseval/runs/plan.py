"""The one shape every run has: plan cells -> encode once -> score -> rows -> ResultsFile.

A run (whiten, simcse-train, index sweep) plans its work as units: the cells that share one encoding
pass (a task of one model, or one SimCSE training). `run_units` refuses a results file whose rows a grid
could never show beside the planned ones before anything is computed, skips the cells already in the
file, hands the rest of each unit to the run's own `compute`, and adds the rows it returns at once, so
Ctrl-C loses at most the unit in progress. Every planned row is built by `planned_row`.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stseval.runs.results import UNDEFINED, ResultRow, ResultsFile, cell_key, whitening_exponents


@dataclass
class Cell:
    """Rows computed together (one score, or every metric of one retrieval index), values NaN until then."""

    rows: list[ResultRow]
    setting: Any = None  # what the run needs to compute the cell, e.g. a FitSource or (method, k)


@dataclass
class Unit:
    """The cells that share one encoding pass; `context` holds what the run planned for them."""

    label: str  # names the unit in log lines, e.g. "multilingual-e5-small STS-B"
    cells: list[Cell]
    context: Any = None
    detail: str = ""  # said before the count of cells to compute, e.g. "1379 sentences, 600 queries, "


@dataclass(frozen=True)
class RunOutput:
    """What a run leaves behind: its results file, the rows computed now, and what report should draw."""

    results: Path
    computed: list[ResultRow] = field(default_factory=list)
    planned: frozenset = frozenset()  # cell keys of every planned row, done earlier or now
    curves: tuple[tuple[Path, str], ...] = ()  # (curve CSV, title) of SimCSE training curves to plot


def planned_row(common: Mapping[str, Any], **cell: Any) -> ResultRow:
    """A row of one cell: the fields its unit shares, the cell's own settings, value NaN until scored.

    beta and gamma follow the method (see results.whitening_exponents), so every run names a whitened
    cell the same way.
    """
    fields = {**common, **cell}
    beta, gamma = whitening_exponents(str(fields["method"]))
    fields.setdefault("beta", beta)
    fields.setdefault("gamma", gamma)
    return ResultRow(**fields, value=float("nan"))


def unique_cells(cells: Sequence[Cell]) -> list[Cell]:
    """The cells with distinct rows, first kept: a repeated option value (`--dims full,full`) is one cell."""
    seen, kept = set(), []
    for cell in cells:
        keys = tuple(cell_key(row) for row in cell.rows)
        if keys not in seen:
            seen.add(keys)
            kept.append(cell)
    return kept


def fill_score(row: ResultRow, score, started: float) -> ResultRow:
    """Put a scoring.Score (value, interval, pairs) into a row with its seconds and the time it was computed;
    an undefined score makes the row status `undefined` with the reason in its note."""
    row.value, row.ci_low, row.ci_high, row.n_pairs = score.spearman, score.ci_low, score.ci_high, score.n_pairs
    if score.undefined:
        row.status, row.note = UNDEFINED, score.undefined
    row.seconds = round(time.perf_counter() - started, 3)
    return row


def now() -> str:
    """UTC time to the second: when a cell was computed, not when its run started."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def run_units(
    results: ResultsFile,
    units: Sequence[Unit],
    compute: Callable[[Unit, list[Cell]], list[ResultRow]],
    log: Callable[[str], None],
    redo: Callable[[Unit, Cell], bool] | None = None,
    redo_reason: str = "",
) -> list[ResultRow]:
    """Compute every planned cell the results file lacks, unit by unit, adding each unit's rows at once.

    Args:
        results: the run's results file.
        units: the planned work, in the order to do it.
        compute: (unit, pending cells) -> the filled rows (it may return none, e.g. on torchrun ranks > 0).
        log: one line per unit.
        redo: (unit, cell) -> whether a finished cell is computed again (a missing --save-kernel file).
        redo_reason: what such cells lack, for the log line.
    Returns:
        the rows computed now.
    Raises:
        StsevalError before anything is computed when the file holds rows of other data, weights or
        library versions (ResultsFile.check_compatible).
    """
    for unit in units:
        results.check_compatible([row for cell in unit.cells for row in cell.rows])
    computed: list[ResultRow] = []
    for unit in units:
        pending = [cell for cell in unit.cells if not all(results.has(cell_key(row)) for row in cell.rows)]
        redone = [cell for cell in unit.cells if redo is not None and cell not in pending and redo(unit, cell)]
        if not pending and not redone:
            log(f"{unit.label}: " + (f"all {len(unit.cells)} cells done, skipping" if len(unit.cells) > 1
                                     else "done, skipping"))
            continue
        note = f" ({len(redone)} done but {redo_reason})" if redone else ""
        log(f"{unit.label}: {unit.detail}{len(pending) + len(redone)} of {len(unit.cells)} cells to compute{note}")
        rows = compute(unit, pending + redone)
        results.add(rows)
        computed.extend(rows)
    return computed
