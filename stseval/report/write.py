"""`stseval report`'s files: results files in, per metric a grid as CSV, markdown, PNG and provenance JSON out.

`write_report` runs the chain of `stseval.report.grids` and writes each grid's files:

    load_results -> apply_filters -> resolve_duplicates -> build_grid -> grid_to_markdown / plot_heatmap

`write_run_grid` is the grid a whiten or simcse-train run writes beside its results. An input that loses
rows to the split, or has no row left at all, says so (`left_out_notes`). The same rows always give the
same bytes: nothing in the output comes from the clock or the machine, only from the rows.

Example:
    >>> write_report(["results/whitening"], Path("runs/report"), best=True, reference=["su2021"])
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from stseval.common.errors import StsevalError
from stseval.common.fileio import check_writable_dir, write_text_atomic
from stseval.report.grids import DEFAULT_COLS, build_grid, metric_scale
from stseval.report.heatmap import plot_heatmap
from stseval.report.ordering import in_order, order_key
from stseval.report.provenance import collect_provenance, summary_line
from stseval.report.references import REFERENCE_METRIC
from stseval.report.rows import apply_filters, as_text, load_results, resolve_duplicates, select_rows, separate_variants
from stseval.report.seeds import seed_summary, seed_summary_markdown
from stseval.report.tables import grid_to_csv_frame, grid_to_markdown
from stseval.runs.results import write_frame


def write_report(
    paths: Sequence[str | Path],
    out: Path,
    rows: Sequence[str] | None = None,
    cols: Sequence[str] = DEFAULT_COLS,
    metrics: Sequence[str] | None = None,
    split: str = "test",
    best: bool = False,
    ci: bool = False,
    filters: Sequence[str] = (),
    reference: Sequence[str] = (),
    strict: bool = False,
    name: str | None = None,
    over_seeds: bool = False,
    task_order: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Turn results files into grids: `<out>/<name>.csv`, `.md`, `.png` and `.provenance.json` per metric.

    An input that loses rows to the split choice, or has no row left at all, says so: one line per
    input (see `left_out_notes`) goes to `log`, the markdown footer and the provenance JSON.

    Args:
        paths: results files or folders (see load_results).
        out: output folder.
        rows, cols, split, ci: as in build_grid.
        metrics: one grid per metric; None means every metric in the (filtered) rows.
        best: bold the best number of each column in the markdown.
        filters: `--filter KEY=PATTERN` values (see apply_filters).
        reference: published tables beside our rows (spearman_cosine grids only).
        strict: refuse re-runs of a cell instead of keeping the latest created_at.
        name: file stem; None gives "<metric>_<split>". With several metrics the metric is appended.
        over_seeds: also write `<stem>_seeds.csv` / `.md`: mean +- sd over seeds (see seed_summary).
        task_order: task columns in this order (see build_grid).
        log: called with each left-out line (the CLI prints them on stderr).
    Returns:
        the written paths: four per metric, one more per extra heatmap page, two more with over_seeds.
    Raises:
        StsevalError for anything the user can fix (see the functions above).
    """
    check_writable_dir(out, "--out")
    loaded = load_results(paths)
    frame = separate_variants(apply_filters(loaded, filters))  # before duplicates: a variant is no re-run
    resolved = resolve_duplicates(frame, strict)
    if not metrics:
        metrics = in_order("metric", set(as_text(resolved["metric"])))
    if reference and REFERENCE_METRIC not in metrics:
        raise StsevalError(
            f"--reference: published tables hold {REFERENCE_METRIC} only; add --metric {REFERENCE_METRIC}")
    grids = [_metric_grid(resolved, metric, rows, cols, split, ci, reference, task_order) for metric in metrics]
    notes = left_out_notes(loaded, frame, pd.concat([used for *_, used in grids]), split, metrics, filters)
    if log is not None:
        for note in notes:
            log(f"left out: {note}")
    written = []
    for metric, used_reference, grid, used in grids:
        settings = {
            "metric": metric, "split": split, "scale": metric_scale(metric),
            "filters": list(filters), "duplicates": "strict" if strict else "latest created_at",
            "dropped_duplicates": int(len(select_rows(frame, metric, split)) - len(used)),
            "reference_tables": used_reference, "best": best, "ci": ci,
            **({"left_out": notes} if notes else {}),
        }
        provenance = collect_provenance(used, grid, settings, used_reference)
        stem = _stem(name, metric, split, several=len(metrics) > 1)
        title = f"{metric}{' x 100' if metric_scale(metric) == 100 else ''}, {split} split"
        written += _write_grid_files(grid, provenance, out, stem, title, best)
        if over_seeds:
            written += _write_seed_files(resolved, metric, split, provenance, out, f"{stem}_seeds", title)
    return written


def _metric_grid(resolved: pd.DataFrame, metric: str, rows: Sequence[str] | None, cols: Sequence[str], split: str,
                 ci: bool, reference: Sequence[str], task_order: Sequence[str] | None,
                 ) -> tuple[str, list[str], pd.DataFrame, pd.DataFrame]:
    """(metric, the reference tables used, its grid, our rows the grid shows); only spearman_cosine gets references."""
    used_reference = list(reference) if metric == REFERENCE_METRIC else []
    grid = build_grid(resolved, rows, cols, metric, split, ci, used_reference, task_order=task_order)
    return metric, used_reference, grid, select_rows(resolved, metric, split)


def _write_grid_files(grid: pd.DataFrame, provenance: dict, out: Path, stem: str, title: str,
                      best: bool) -> list[Path]:
    """Write `<out>/<stem>.csv`, `.md`, `.png` (and `_p2.png`, ... for a grid of several heatmap pages) and
    `.provenance.json` of one grid, in that order; returns them."""
    paths = [out / f"{stem}{suffix}" for suffix in (".csv", ".md", ".png", ".provenance.json")]
    write_frame(grid_to_csv_frame(grid), paths[0])
    write_text_atomic(grid_to_markdown(grid, best, provenance, title), paths[1])
    pages = plot_heatmap(grid, paths[2], title)
    write_text_atomic(json.dumps(provenance, indent=2, ensure_ascii=False) + "\n", paths[3])
    return paths[:2] + pages + paths[3:]


def _write_seed_files(resolved: pd.DataFrame, metric: str, split: str, provenance: dict, out: Path, stem: str,
                      title: str) -> list[Path]:
    """Write `<out>/<stem>.csv` and `.md`: the metric's cells as mean +- sd over seeds; returns them."""
    summary = seed_summary(resolved, metric, split)
    paths = [out / f"{stem}{suffix}" for suffix in (".csv", ".md")]
    write_frame(summary, paths[0])
    write_text_atomic(seed_summary_markdown(summary, f"{title}, over seeds") + "\n"
                      + summary_line(provenance) + "\n", paths[1])
    return paths


def write_run_grid(results_path: Path, out: Path, split: str, task_order: Sequence[str] | None = None) -> str:
    """The grid a whiten or simcse-train run prints: grid.csv / .md / .png / .provenance.json beside its
    results, every spearman_cosine cell of the file for `split`, best bold; returns the markdown.

    The grid holds every cell of the results file for the evaluated split, so runs with and without a
    prefix collected in one folder show side by side (prefix becomes a row key when it varies).
    """
    written = write_report([results_path], out, metrics=["spearman_cosine"], split=split, best=True, name="grid",
                           task_order=task_order)
    markdown = next(path for path in written if path.suffix == ".md")
    return markdown.read_text(encoding="utf-8")


def left_out_notes(loaded: pd.DataFrame, filtered: pd.DataFrame, used: pd.DataFrame, split: str,
                   metrics: Sequence[str], filters: Sequence[str] = ()) -> list[str]:
    """One line per input file that loses rows to the split choice or ends up with no row in the grids.

    Rows left out by an explicit --filter or --metric are what the user asked for and are not listed,
    unless they empty an input: a report never drops an input without a line saying so.

    Args:
        loaded: every row read (load_results), with source_file.
        filtered: the rows --filter kept.
        used: the rows the grids show (all metrics).
        split: the --split value ("all" keeps every split).
        metrics: the metrics gridded.
    Returns:
        e.g. "results/simcse/simcse.csv: none of its 25 rows are in the grid: 25 have split
        test-sample1000, not test (show them with --split test-sample1000, or --split all)".
    """
    notes = []
    used_counts = as_text(used["source_file"]).value_counts() if len(used) else pd.Series(dtype=int)
    for source, rows in loaded.groupby(as_text(loaded["source_file"]), sort=False):
        n_used = int(used_counts.get(source, 0))
        kept = filtered[as_text(filtered["source_file"]) == source]
        kept = kept[as_text(kept["metric"]).isin(list(metrics))]
        reasons = []
        if split not in (None, "all"):
            other = as_text(kept["split"])[as_text(kept["split"]) != split]
            if len(other):
                counts = other.value_counts()
                shown = ", ".join(f"{count} have split {value}" for value, count in
                                  sorted(counts.items(), key=lambda item: order_key("split", str(item[0]))))
                reasons.append(f"{shown}, not {split} (show them with --split {counts.index[0]}, or --split all)")
        if n_used == 0 and not reasons:
            if len(kept) == 0 and len(filtered[as_text(filtered["source_file"]) == source]) == 0:
                reasons.append(f"no row matches --filter {' '.join(filters)}")
            elif len(kept) == 0:
                reasons.append(f"its metrics are {', '.join(in_order('metric', set(as_text(rows['metric']))))}, "
                               f"not {', '.join(metrics)}")
            else:
                reasons.append("every row is an older re-run of a cell another input holds")
        if reasons:
            head = (f"none of its {len(rows)} rows are in the grid" if n_used == 0
                    else f"{n_used} of its {len(rows)} rows are in the grid")
            notes.append(f"{source}: {head}: {'; '.join(reasons)}")
    return notes


def _stem(name: str | None, metric: str, split: str, several: bool) -> str:
    """Output file stem: NAME, NAME_METRIC when there are several metrics, METRIC_SPLIT without a name."""
    stem = f"{metric}_{split}" if not name else f"{name}_{metric}" if several else name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "grid"  # a safe file name
