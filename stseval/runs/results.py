"""Long-format result rows, their provenance, atomic writes and resume.

One row per (model, pooling, method, dims, fit_on, train_on, prefix, dropout, task, split, metric) with a
`value`. Wide grids are views built by stseval/report/grids.py from these rows; they are never read back as a source.

Files written before the descriptive columns existed carry them in one `extra` column of `key=value;...`
text; `read_rows` converts such a file into the columns (`convert_legacy_extra`), with the same cell keys,
so a resumed run skips its rows and the first write rewrites the file in the current columns.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import importlib.metadata
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stseval.common.errors import StsevalError
from stseval.common.fileio import atomic_path, write_text_atomic  # noqa: F401 - write_text_atomic re-exported
from stseval.common.locks import LockTimeout, removable_lock
from stseval.common.version import __version__

# what makes two rows the same cell: a re-run with these equal resumes instead of recomputing
CELL_KEY = (
    "model", "model_fingerprint", "pooling", "method", "dims", "fit_on", "train_on", "prefix",
    "dropout", "task", "split", "metric", "data_sha256",
    # SimCSE settings that change the trained weights, and the seed (sample, data order, dropout masks)
    "loss", "batch_size", "learning_rate", "epochs", "seed",
    # whitening's eigenvalue exponents (1 and 1 for plain BERT-whitening; "" when not whitened)
    "beta", "gamma",
)


@dataclass
class ResultRow:
    """One measured number and how it was produced."""

    model: str
    pooling: str
    method: str  # raw | whitening | simcse | simcse+whitening | retrieval methods
    task: str
    split: str
    metric: str  # spearman_cosine, recall@10, ...
    value: float
    dims: str = "full"
    fit_on: str = ""  # sentences the whitening statistics came from ("" when not whitened)
    train_on: str = ""  # sentences SimCSE trained on ("" when not trained)
    prefix: str = ""  # text prepended to every sentence, e.g. "query: " for E5
    dropout: str = ""
    loss: str = ""  # SimCSE loss (su | princeton | cached); "" when not trained
    batch_size: str = ""  # SimCSE sentences per step
    learning_rate: str = ""  # SimCSE Adam learning rate
    epochs: str = ""  # SimCSE epochs
    beta: str = ""  # whitening: "1" for plain BERT-whitening; "" when not whitened (see whitening_exponents)
    gamma: str = ""  # whitening: "1" for plain BERT-whitening; "" when not whitened
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n_pairs: int = 0
    n_fit: int = 0  # vectors the whitening was fitted on (0 when not whitened)
    fit_rank: int = 0  # rank of their covariance: directions past it were not seen by the fit (0: not whitened)
    seconds: float = 0.0
    seed: int = 0
    model_fingerprint: str = ""
    data_sha256: str = ""
    command: str = ""
    stseval_version: str = __version__
    git_commit: str = ""
    versions: str = ""
    created_at: str = ""
    status: str = "ok"  # ok | n/a (e.g. pooler on a model without one)
    machine: str = ""  # where it ran, e.g. "x86_64, 2 CPUs, Intel(R) Xeon(R) Processor" (wall time is `seconds`)
    # descriptive columns: facts about how a cell was computed, never part of its cell key ("" where they do not apply)
    max_length: str = ""  # tokens per sentence the encoder kept (64; PAWSX 128)
    fit_splits: str = ""  # whitening fit_on all-available: the task's splits behind it, e.g. "valid+test"
    run_dir: str = ""  # SimCSE: the trained model's folder
    trained_fingerprint: str = ""  # SimCSE: first 12 hex characters of the trained model's fingerprint
    train_steps: str = ""  # SimCSE: optimizer steps taken
    final_loss: str = ""  # SimCSE: training loss of the last step
    sentences_per_s: str = ""  # training throughput: sentences/s (SimCSE), training pairs/s (CoSENT)
    chosen_on: str = ""  # simcse-best-valid: the pairs that chose the checkpoint, e.g. "valid-sample1000"
    best_step: str = ""  # simcse-best-valid: the step of the chosen checkpoint
    best_valid_spearman: str = ""  # simcse-best-valid: its Spearman on `chosen_on`
    index: str = ""  # retrieval: FAISS index factory string, e.g. "Flat"
    search_params: str = ""  # retrieval: FAISS search settings, e.g. "nprobe=16"
    top_k: str = ""  # retrieval: ranking depth scored
    n_corpus: str = ""  # retrieval: sentences in the indexed corpus
    n_dims: str = ""  # retrieval: the vector size searched (the real k of dims "full")
    threads: str = ""  # retrieval: FAISS threads during the search
    torch_threads: str = ""  # torch intra-op threads while encoding / training (--threads; "" in older files)
    positive_min_score: str = ""  # retrieval: gold score from which a pair counts as relevant
    note: str = ""  # why a cell is n/a, or legacy `extra` text no column holds


COLUMNS = [f.name for f in dataclasses.fields(ResultRow)]
WHITENING_EXPONENTS = ("1", "1")
"""(beta, gamma) of plain BERT-whitening, what a whitening row measured unless it says otherwise."""
PCA_EXPONENTS = ("0", "0")
"""(beta, gamma) of a pca row: a rotation onto the principal axes, neither centred nor rescaled."""


def whitening_exponents(method: str) -> tuple[str, str]:
    """(beta, gamma) a row's method implies: ("1", "1") when it whitens, ("0", "0") for pca, else ("", "").

    A whiten run with --beta / --gamma sets them itself; this is the default every run shares.
    """
    if method.startswith("pca"):
        return PCA_EXPONENTS
    return WHITENING_EXPONENTS if "whitening" in method else ("", "")


LEGACY_EXTRA = "extra"
"""The column older files carry their descriptive facts in, as `key=value;...` text."""

_LEGACY_KEYS = {
    "fit_splits": "fit_splits", "n_fit_vectors": "n_fit", "run_dir": "run_dir", "max_length": "max_length",
    "trained_fingerprint": "trained_fingerprint", "steps": "train_steps", "final_loss": "final_loss",
    "sentences_per_s": "sentences_per_s", "chosen_on": "chosen_on", "best_step": "best_step",
    "best_valid_spearman": "best_valid_spearman", "index": "index", "search_params": "search_params",
    "top_k": "top_k", "n_corpus": "n_corpus", "n_dims": "n_dims", "threads": "threads",
    "positive_min_score": "positive_min_score",
}
_LEGACY_PAIR = re.compile(r"^[a-z_]+=")


def convert_legacy_extra(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame read as text from a file with the legacy `extra` column, in the current columns.

    Each `key=value` of `extra` moves into its column (`n_fit_vectors` into an empty or 0 `n_fit`, `steps`
    into `train_steps`); free text (the reason of an n/a cell) and keys no column holds (e.g. the first
    SimCSE files' `loss=su;batch_size=64;...`, settings their rows lack, so filling those columns would
    change the rows' cell keys) go to `note`. beta and gamma become "1" on whitening rows, as plain
    BERT-whitening is what they measured. Nothing that enters `cell_key` changes otherwise, so a resumed
    run skips these rows. A frame without `extra` is returned as it is.

    Args:
        frame: results read with dtype=str and keep_default_na=False.
    Returns:
        a copy with every column of `COLUMNS` (missing ones "") and without `extra`.
    """
    if LEGACY_EXTRA not in frame.columns:
        return frame
    frame = frame.copy()
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    records = []
    for extra, n_fit in zip(frame[LEGACY_EXTRA], frame["n_fit"], strict=True):
        facts, leftover = _split_extra(str(extra))
        if "n_fit" in facts and n_fit not in ("", "0"):
            del facts["n_fit"]  # the column already says it
        facts["note"] = ";".join(leftover)
        records.append(facts)
    converted = pd.DataFrame.from_records(records, index=frame.index).fillna("")
    for column in converted.columns:
        filled = converted[column] != ""
        frame.loc[filled, column] = converted.loc[filled, column]
    whitened = frame["method"].str.contains("whitening", regex=False)
    for column, exponent in zip(("beta", "gamma"), WHITENING_EXPONENTS, strict=True):
        frame.loc[whitened & (frame[column] == ""), column] = exponent
    return frame.drop(columns=[LEGACY_EXTRA])


def _split_extra(extra: str) -> tuple[dict[str, str], list[str]]:
    """({column: value} of the known keys, [the rest as written]) of one legacy `extra` text."""
    parts = [part for part in extra.split(";") if part]
    if not all(_LEGACY_PAIR.match(part) for part in parts):
        return {}, [extra] if extra else []  # free text, e.g. "model has no pooler output"
    facts, leftover = {}, []
    for part in parts:
        key, value = part.split("=", 1)
        if key in _LEGACY_KEYS:
            facts[_LEGACY_KEYS[key]] = value
        else:
            leftover.append(part)
    return facts, leftover
# the columns a CSV needs to count as a results file (the rest are filled with "")
REQUIRED_COLUMNS = ("model", "pooling", "method", "task", "split", "metric", "value")


def provenance(seed: int = 0) -> dict[str, str | int]:
    """Fields that say how a run was produced: command line, git commit, library versions, time."""
    return {
        # shell-quoted, so an empty --prefix "" or "query: " survives copy-paste back into a shell
        "command": shlex.join(["stseval", *sys.argv[1:]]) if sys.argv else "",
        "git_commit": git_commit(),
        "versions": library_versions(),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "stseval_version": __version__,
    }


VECTOR_UNITS: tuple[tuple[str, str], ...] = (
    ("amx_bf16", "AMX"), ("avx512_bf16", "AVX-512 BF16"), ("avx512f", "AVX-512"), ("avx2", "AVX2"))
"""(/proc/cpuinfo flag, name) from widest to narrowest: the first a CPU has is named in `machine`, because one
cloud CPU model name ("AMD EPYC") covers hosts with and without AVX-512/bf16, which run at different speeds."""


def widest_vector_unit(flags: frozenset[str]) -> str:
    """The name of the widest x86 vector unit among a CPU's flags, or "" when none is known (e.g. arm64)."""
    return next((name for flag, name in VECTOR_UNITS if flag in flags), "")


def machine_description() -> str:
    """'x86_64, 2 CPUs, <cpu model> (<widest vector unit>)[, cuda <gpu name>]': the machine a row's wall time was
    measured on."""
    import os
    import platform

    from stseval.options import cpu_flags

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    described = f"{platform.machine()}, {os.cpu_count()} CPUs, {cpu}"
    unit = widest_vector_unit(cpu_flags())
    if unit:
        described += f" ({unit})"
    try:
        import torch

        if torch.cuda.is_available():
            described += f", cuda {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    except ImportError:
        pass
    return described


def git_commit() -> str:
    """Short commit of the stseval checkout, with '+dirty' when it has uncommitted changes.

    A copy of the checkout without its .git folder (e.g. sent to a GPU machine) says which commit it is
    through the environment variable STSEVAL_GIT_COMMIT.
    """
    import os

    if os.environ.get("STSEVAL_GIT_COMMIT"):
        return os.environ["STSEVAL_GIT_COMMIT"]
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "stseval"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def library_versions() -> str:
    """'python=3.11.7;torch=2.13.0;...' for the libraries that change numbers."""
    parts = [f"python={sys.version.split()[0]}"]
    for package in ("torch", "transformers", "sentence-transformers", "numpy", "scipy", "scikit-learn", "faiss-cpu"):
        try:
            parts.append(f"{package}={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return ";".join(parts)


def rows_to_frame(rows: list[ResultRow]) -> pd.DataFrame:
    """Rows as a DataFrame with the documented columns in order."""
    return pd.DataFrame([dataclasses.asdict(row) for row in rows], columns=COLUMNS)


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write a CSV atomically: readers see the old file or the new one, never half of one."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def read_rows(path: Path) -> pd.DataFrame:
    """Read a long-format results CSV, checking it has the columns rows need and that every row is sound.

    A row is sound when it has every field of the header, names a task of `TASKS` and one of its splits
    (or a seeded sample, `test-sample1000`), has a known status, records its data_sha256 and
    model_fingerprint, has a value unless its status says why not (n/a, undefined), a value and interval
    that are finite numbers within the metric's range (`metric_range`) with the value inside the interval,
    and n_pairs and seconds >= 0.

    Raises:
        StsevalError naming the file when it is missing, empty, unparsable or lacks columns (an identity
        column included), and file:line for the first unsound row.
    """
    path = Path(path)
    if not path.is_file():
        raise StsevalError(f"{path}: results file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        lines, short = _record_lines(path)
    except pd.errors.EmptyDataError:
        raise StsevalError(f"{path}: results file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as err:
        raise StsevalError(f"{path}: not a readable results CSV ({err})") from None
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise StsevalError(f"{path}: missing column(s) {', '.join(missing)}; is this a stseval results file?")
    frame = convert_legacy_extra(frame)
    missing = [name for name in IDENTITY_COLUMNS if name not in frame.columns]
    if missing:
        raise StsevalError(f"{path}: missing column(s) {', '.join(missing)}; without them a re-run cannot tell "
                           "whether its rows were made on the same data and weights (rerun into a new --out)")
    if len(lines) != len(frame):  # the csv module and pandas disagree on records: fall back to counting
        lines = list(range(2, len(frame) + 2))
    if short is not None:
        line, n_fields = short
        raise StsevalError(f"{path}:{line}: {n_fields} of {len(frame.columns)} fields; the row was cut short "
                           "(an interrupted copy?): delete the line, or the file, and rerun")
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    values = pd.to_numeric(frame["value"].replace("", "nan"), errors="coerce")
    bad = values.isna() & (frame["status"] != "n/a") & (frame["value"] != "")
    if bad.any():
        first = int(bad.to_numpy().argmax())
        raise StsevalError(f"{path}:{lines[first]}: value {frame['value'].iloc[first]!r} is not a number")
    empty = (frame["status"] == "ok") & (frame["value"] == "")
    if empty.any():
        first = int(empty.to_numpy().argmax())
        raise StsevalError(f"{path}:{lines[first]}: status ok but no value; a finished cell has a number "
                           f"(status {UNDEFINED} or n/a, with the reason in note, when it has none): fix or delete "
                           "the line")
    frame["value"] = values
    for column in ("ci_low", "ci_high", "seconds"):
        frame[column] = pd.to_numeric(frame[column].replace("", "nan"), errors="coerce")
    _check_rows(frame, path, lines)
    return frame[COLUMNS + [c for c in frame.columns if c not in COLUMNS]]


UNDEFINED = "undefined"
"""Status of a cell whose metric has no value on its data, e.g. Spearman of constant gold labels (note says why)."""
STATUSES = ("ok", "n/a", UNDEFINED, "")  # "" in files written before the status column
IDENTITY_COLUMNS = ("data_sha256", "model_fingerprint")
"""What a re-run compares before adding rows (ResultsFile.check_compatible): every row must record them."""
_SAMPLED_SPLIT = re.compile(r"^(?P<split>[a-z]+)-sample[1-9][0-9]*$")  # split_label of a seeded sample
_COUNT = re.compile(r"^[0-9]+$")


def metric_range(metric: str) -> tuple[float, float]:
    """The values a metric can take: Spearman in [-1, 1] (a paired difference `spearman_..._minus_...`
    in [-2, 2]), retrieval rates in [0, 1], counts and timings >= 0; other metrics any finite number."""
    if metric.startswith("spearman"):
        return (-2.0, 2.0) if "_minus_" in metric else (-1.0, 1.0)
    if metric.startswith(("recall@", "mrr@", "ndcg@")):
        return 0.0, 1.0
    if metric in ("qps", "build_s", "index_bytes"):
        return 0.0, float("inf")
    return float("-inf"), float("inf")


def _check_rows(frame: pd.DataFrame, path: Path, lines: list[int]) -> None:
    """Raise StsevalError at the first row with an unknown task, split or status, a missing identity, a
    value out of range, an interval that leaves out its value, or a negative n_pairs or seconds."""
    from stseval.data.tasks import TASKS

    splits = {split for spec in TASKS.values() for split in spec.files}
    for position, (task, split, status, metric, value, ci_low, ci_high, n_pairs, seconds, *identity) in enumerate(zip(
            frame["task"], frame["split"], frame["status"], frame["metric"], frame["value"], frame["ci_low"],
            frame["ci_high"], frame["n_pairs"], frame["seconds"], *(frame[name] for name in IDENTITY_COLUMNS),
            strict=True)):
        where = f"{path}:{lines[position]}"
        if task not in TASKS:
            raise StsevalError(f"{where}: task {task!r} is not one of {', '.join(TASKS)}")
        sampled = _SAMPLED_SPLIT.match(split)
        if (sampled.group("split") if sampled else split) not in splits:
            raise StsevalError(f"{where}: split {split!r} is not one of {', '.join(sorted(splits))} "
                               "(or SPLIT-sampleN); fix or delete the line")
        if status not in STATUSES:
            raise StsevalError(f"{where}: status {status!r} is not ok, n/a or {UNDEFINED}")
        for name, recorded in zip(IDENTITY_COLUMNS, identity, strict=True):
            if not str(recorded).strip():
                raise StsevalError(f"{where}: {name} is empty; without it a re-run cannot tell whether this row "
                                   "was made on the same data and weights: fix or delete the line")
        low, high = metric_range(metric)
        for name, number in (("value", value), ("ci_low", ci_low), ("ci_high", ci_high)):
            if np.isnan(number):
                continue  # not measured (n/a cells, no bootstrap)
            if not np.isfinite(number) or not low <= number <= high:
                span = f"[{low:g}, {high:g}]" if np.isfinite(high) else f">= {low:g}" if np.isfinite(low) else "finite"
                raise StsevalError(f"{where}: {name} {number!r} of {metric} is outside {span}; "
                                   "the row is damaged or not from stseval: fix or delete the line")
        # values are written to 6 significant digits, and rounding keeps order: no tolerance is needed
        if ci_low > value or ci_high < value or ci_low > ci_high:  # False wherever one side is NaN
            raise StsevalError(f"{where}: interval [{ci_low!r}, {ci_high!r}] does not contain value {value!r}; "
                               "the row is damaged or not from stseval: fix or delete the line")
        if n_pairs != "" and not _COUNT.match(str(n_pairs)):
            raise StsevalError(f"{where}: n_pairs {n_pairs!r} is not a count (0, 1, 2, ...); fix or delete the line")
        if not np.isnan(seconds) and not (np.isfinite(seconds) and seconds >= 0):
            raise StsevalError(f"{where}: seconds {seconds!r} is not a time >= 0; fix or delete the line")


def _record_lines(path: Path) -> tuple[list[int], tuple[int, int] | None]:
    """The line each CSV record ends on (blank lines skipped, as pandas does), and (line, fields) of the
    first record with fewer fields than the header, or None."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        lines, short = [], None
        for record in reader:
            if not record:
                continue
            lines.append(reader.line_num)
            if short is None and len(record) < len(header):
                short = (reader.line_num, len(record))
    return lines, short


def count_rows(path: Path) -> int:
    """Rows in a results file; 0 when it is missing or unreadable (for messages, not for resuming)."""
    try:
        return len(read_rows(path))
    except StsevalError:
        return 0


def cell_key(row: ResultRow | dict | pd.Series) -> tuple[str, ...]:
    """The identity of a result cell, used to resume and to find duplicates."""
    get = (lambda name: getattr(row, name)) if isinstance(row, ResultRow) else (lambda name: row[name])
    return tuple(str(get(name)) for name in CELL_KEY)


LOCK_TIMEOUT_S = 120.0  # a merge takes milliseconds; a lock held this long belongs to a hung process


def lock_path(path: Path) -> Path:
    """The lock file that serialises writers of a results file: `.NAME.lock` beside it (hidden, so
    `report` skips it), present only while a writer holds it (see common/locks.py)."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


class ResultsFile:
    """A long-format CSV that grows cell by cell and survives interruption and concurrent writers.

    Each `add` takes a lock beside the file, re-reads what is on disk, merges its rows in and rewrites
    the file atomically. So Ctrl-C loses at most the cell being computed, two runs writing into one
    `--out` at the same time keep each other's rows, and a re-run asks `has(...)` to skip finished cells.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.frame = self._read()
        self._keys = {cell_key(record) for _, record in self.frame.iterrows()}

    def has(self, key: tuple[str, ...]) -> bool:
        return key in self._keys

    def add(self, rows: list[ResultRow], replaces: Callable[[pd.Series], bool] | None = None) -> None:
        """Merge rows into the file (replacing rows of the same cell) under its lock, atomically.

        The file is re-read under the lock, so rows another process wrote since this one started are kept.
        replaces: also drops the file's rows it is true of (a row of another cell that the new rows make
        stale, e.g. an earlier `whitening-chosen` row of the same group whose choice has moved).
        """
        if not rows:
            return
        rows = list({cell_key(row): row for row in rows}.values())  # one row per cell, the last given
        for row in rows:  # an ok row without a value would be refused on read: say it has none
            if row.status == "ok" and np.isnan(float(row.value)):
                row.status, row.note = UNDEFINED, row.note or f"{row.metric} came out NaN"
        new = rows_to_frame(rows)
        new_keys = {cell_key(row) for row in rows}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with removable_lock(lock_path(self.path), timeout_s=LOCK_TIMEOUT_S):
                current = self._read()  # what other writers added since we last looked
                keep = [cell_key(record) not in new_keys and not (replaces and replaces(record))
                        for _, record in current.iterrows()]
                parts = [frame for frame in (current[keep], new) if not frame.empty]
                merged = pd.concat(parts, ignore_index=True) if parts else new
                write_frame(merged, self.path)
        except LockTimeout:
            raise StsevalError(f"{lock_path(self.path)}: another stseval process has held this lock for "
                               f"{LOCK_TIMEOUT_S:.0f} s; if none is running, delete the lock file") from None
        self.frame = merged
        self._keys = {cell_key(record) for _, record in merged.iterrows()}

    def check_compatible(self, planned: list[ResultRow], option: str = "--out") -> None:
        """Refuse to add `planned` rows to a file whose rows a grid could never show beside them.

        Call it before computing anything: rows of the same task and split from other data
        (data_sha256), of the same model name with other weights (model_fingerprint), or from other
        library versions would make every later grid of this file fail.

        Raises:
            StsevalError naming the conflicting rows (file:line) and the ways out.
        """
        if self.frame.empty or not planned:
            return
        existing = self.frame.astype({name: str for name in ("task", "split", "model", "data_sha256",
                                                              "model_fingerprint", "versions")})
        for row in planned:
            checks = (
                ("data_sha256", (existing["task"] == row.task) & (existing["split"] == row.split),
                 f"{row.task} {row.split} scored on other data",
                 "or point --data-dir at the data they were scored on"),
                ("model_fingerprint", existing["model"] == row.model,
                 f"model {row.model} with other weights or tokenizer",
                 "or restore the model they were made with"),
                ("versions", pd.Series(True, index=existing.index),
                 "other library versions", "or rerun in the environment they were made in"),
            )
            for column, same_cell, what, restore in checks:
                ours = str(getattr(row, column))
                clash = same_cell & (existing[column] != "") & (existing[column] != ours)
                if ours and clash.any():
                    theirs = existing.loc[clash, column].iloc[0]
                    lines = _line_list(self.path, clash)
                    detail = (f"{versions_difference(theirs, ours)}, first at {lines}" if column == "versions" else
                              f"{column} {_short(theirs)} at {lines}; this run: {_short(ours)}")
                    raise StsevalError(
                        f"{option} {self.path.parent}: {self.path.name} already holds {int(clash.sum())} rows of "
                        f"{what} ({detail}); a grid never mixes them, so nothing was computed. Ways out: another "
                        f"{option} folder, delete those rows (or the file), {restore}")

    def _read(self) -> pd.DataFrame:
        return read_rows(self.path) if self.path.exists() else pd.DataFrame(columns=COLUMNS)


def versions_difference(theirs: str, ours: str) -> str:
    """The libraries whose versions differ between two `library_versions` strings, with both versions.

    Example: versions_difference("python=3.11.7;torch=2.4.0", "python=3.11.7;torch=2.5.1;faiss-cpu=1.8.0")
    gives "torch 2.4.0 there, 2.5.1 in this run; faiss-cpu absent there, 1.8.0 in this run".
    """
    def parse(text: str) -> dict[str, str]:
        pairs = (part.partition("=") for part in text.split(";") if part.strip())
        return {name.strip(): version.strip() for name, _, version in pairs}

    there, here = parse(theirs), parse(ours)
    differing = [name for name in dict.fromkeys([*there, *here]) if there.get(name) != here.get(name)]
    return "; ".join(f"{name} {there.get(name, 'absent')} there, {here.get(name, 'absent')} in this run"
                     for name in differing) or f"versions {theirs!r} there, {ours!r} in this run"


def _short(value: str) -> str:
    """A checksum or version string cut to a readable length."""
    return value if len(value) <= 40 else value[:16] + "..."


def _line_list(path: Path, mask: pd.Series) -> str:
    """'r.csv:2, 3, 5 and 12 more' for the rows of a frame read from `path` (line = index + 2)."""
    lines = [int(index) + 2 for index in mask[mask].index]  # the header is line 1
    shown = ", ".join(str(line) for line in lines[:5])
    return f"{path.name}:{shown}" + (f" and {len(lines) - 5} more" if len(lines) > 5 else "")
