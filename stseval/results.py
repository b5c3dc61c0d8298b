"""Long-format result rows, their provenance, atomic writes and resume.

One row per (model, pooling, method, dims, fit_on, train_on, prefix, dropout, task, split, metric) with a
`value`. Wide grids are views built by report.py from these rows; they are never read back as a source.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import importlib.metadata
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stseval import __version__
from stseval.errors import StsevalError
from stseval.fileio import atomic_path, write_text_atomic  # noqa: F401 - write_text_atomic re-exported

# what makes two rows the same cell: a re-run with these equal resumes instead of recomputing
CELL_KEY = (
    "model", "model_fingerprint", "pooling", "method", "dims", "fit_on", "train_on", "prefix",
    "dropout", "task", "split", "metric", "data_sha256",
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
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n_pairs: int = 0
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
    extra: str = ""  # free-form key=value;... for settings specific to a method


COLUMNS = [f.name for f in dataclasses.fields(ResultRow)]
# the columns a CSV needs to count as a results file (the rest are filled with "")
REQUIRED_COLUMNS = ("model", "pooling", "method", "task", "split", "metric", "value")


def provenance(seed: int = 0) -> dict[str, str | int]:
    """Fields that say how a run was produced: command line, git commit, library versions, time."""
    return {
        # shell-quoted, so an empty --prefix "" or "query: " survives copy-paste back into a shell
        "command": shlex.join(["stseval", *sys.argv[1:]]) if sys.argv else "",
        "git_commit": git_commit(),
        "versions": library_versions(),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "stseval_version": __version__,
    }


def git_commit() -> str:
    """Short commit of the stseval checkout, with '+dirty' when it has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
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
    """Read a long-format results CSV, checking it has the columns rows need.

    Raises:
        StsevalError naming the file when it is missing, empty, unparsable or lacks columns.
    """
    path = Path(path)
    if not path.is_file():
        raise StsevalError(f"{path}: results file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise StsevalError(f"{path}: results file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise StsevalError(f"{path}: not a readable results CSV ({err})") from None
    missing = [name for name in REQUIRED_COLUMNS if name not in frame.columns]
    if missing:
        raise StsevalError(f"{path}: missing column(s) {', '.join(missing)}; is this a stseval results file?")
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    values = pd.to_numeric(frame["value"].replace("", "nan"), errors="coerce")
    bad = values.isna() & (frame["status"] != "n/a") & (frame["value"] != "")
    if bad.any():
        first = int(bad.idxmax())
        # +2: the header is line 1 and rows count from 0
        raise StsevalError(f"{path}:{first + 2}: value {frame.loc[first, 'value']!r} is not a number")
    frame["value"] = values
    for column in ("ci_low", "ci_high", "seconds"):
        frame[column] = pd.to_numeric(frame[column].replace("", "nan"), errors="coerce")
    return frame[COLUMNS + [c for c in frame.columns if c not in COLUMNS]]


def cell_key(row: ResultRow | dict | pd.Series) -> tuple[str, ...]:
    """The identity of a result cell, used to resume and to find duplicates."""
    get = (lambda name: getattr(row, name)) if isinstance(row, ResultRow) else (lambda name: row[name])
    return tuple(str(get(name)) for name in CELL_KEY)


class ResultsFile:
    """A long-format CSV that grows cell by cell and survives interruption.

    Each `add` rewrites the file atomically, so Ctrl-C loses at most the cell being computed, and a
    re-run asks `has(...)` to skip finished cells.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        if self.path.exists():
            self.frame = read_rows(self.path)
        else:
            self.frame = pd.DataFrame(columns=COLUMNS)
        self._keys = {cell_key(record) for _, record in self.frame.iterrows()}

    def has(self, key: tuple[str, ...]) -> bool:
        return key in self._keys

    def add(self, rows: list[ResultRow]) -> None:
        """Append rows (replacing rows of the same cell) and write the file atomically."""
        if not rows:
            return
        new = rows_to_frame(rows)
        new_keys = {cell_key(row) for row in rows}
        keep = [cell_key(record) not in new_keys for _, record in self.frame.iterrows()]
        parts = [frame for frame in (self.frame[keep], new) if not frame.empty]
        self.frame = pd.concat(parts, ignore_index=True) if parts else new
        self._keys |= new_keys
        write_frame(self.frame, self.path)
