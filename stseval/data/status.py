"""What `stseval tasks` shows: each split file of the manifest found or missing, its rows, checksum, parse.

`task_status` looks at a data folder (parsing files whose checksum is not the published one, or every file
with validate); `format_task_status` renders its rows as the plain-text table; `git_blob_sha1` and
`count_lines` are the file facts it (and `stseval data import`) compares with the manifest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from stseval.common.errors import StsevalError
from stseval.common.fileio import file_sha256
from stseval.data.tasks import TASKS, read_pairs, split_path


class SplitStatus(NamedTuple):
    """One row of `stseval tasks`: is this split's file there, how long, does its checksum match."""

    task: str
    split: str
    path: Path
    found: bool
    rows: int | None  # lines in the file; None when it is missing
    sha256_ok: bool | None  # None when missing or when the manifest has no checksum for it
    parsed: bool | None = None  # every line valid; None when the file was not parsed
    problem: str = ""  # the first parse error, "path:line: what is wrong", when parsed is False
    constant_label: float | None = None  # the one label every pair has, when parsed (Spearman is undefined)


def git_blob_sha1(path: Path) -> str:
    """Git blob id of a file, as `git hash-object FILE` prints it; matches the manifest's git_blob."""
    raw = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()


def count_lines(path: Path) -> int:
    """Number of lines in a file, counting a last line without a final newline."""
    raw = Path(path).read_bytes()
    return raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)


def task_status(data_dir: Path, validate: bool = False) -> list[SplitStatus]:
    """State of every split file the manifest knows, for `stseval tasks`.

    A file whose checksum differs from the manifest's (a user's own copy), or that the manifest has
    no checksum for, is parsed, so a broken file shows its first error as `file:line`; `validate`
    parses every file that is found. A file whose checksum matches is the published file, known to parse.

    Args:
        data_dir: a folder in the senteval_cn layout.
        validate: parse every file found, also those whose checksum matches.
    Returns:
        one SplitStatus per (task, split) in manifest order, missing train splits included.
        `rows` counts lines; `sha256_ok` is None when the file is missing or the manifest has no
        checksum for it; `parsed` / `problem` tell how parsing went (None / "" when not parsed).
    """
    status = []
    for spec in TASKS.values():
        for split, expected in spec.files.items():
            path = split_path(spec, split, data_dir)
            if not path.is_file():
                status.append(SplitStatus(spec.name, split, path, False, None, None))
                continue
            sha256_ok = None if expected.sha256 is None else file_sha256(path) == expected.sha256
            parsed, problem, constant = None, "", None
            if validate or not sha256_ok:
                try:
                    scores = {pair.score for pair in read_pairs(path, spec)}
                    parsed = True
                    constant = scores.pop() if len(scores) == 1 else None
                except StsevalError as err:
                    parsed, problem = False, str(err)
            status.append(SplitStatus(spec.name, split, path, True, count_lines(path), sha256_ok, parsed, problem,
                                      constant))
    return status


def format_task_status(status: Sequence[SplitStatus], data_dir: Path) -> str:
    """Render `task_status` rows as the plain-text table `stseval tasks` prints.

    Example output lines: `BQ     train  binary 0/1    100000   100000  found    sha256 ok`, and
    for a broken copy `...  found    sha256 DIFFERS, does not parse` followed by an indented
    `error: DIR/BQ/BQ.test.data:17: label 'x' is not a number`.
    """
    lines = [
        f"data folder: {data_dir}",
        f"{'task':6s} {'split':6s} {'labels':12s} {'rows':>7s} {'expected':>8s}  file     checksum",
    ]
    for row in status:
        spec = TASKS[row.task]
        low, high = spec.score_range
        labels = f"{spec.label_kind} {low:g}{'/' if spec.label_kind == 'binary' else '-'}{high:g}"
        rows = "-" if row.rows is None else str(row.rows)
        checksum = {True: "sha256 ok", False: "sha256 DIFFERS", None: "-"}[row.sha256_ok]
        if row.found and row.sha256_ok is None:
            checksum = "not in manifest"
        if row.parsed is not None:
            checksum += ", parses" if row.parsed else ", does not parse"
        if row.constant_label is not None:
            checksum += f", labels all {row.constant_label:g}"
        lines.append(
            f"{row.task:6s} {row.split:6s} {labels:12s} {rows:>7s} {spec.files[row.split].rows:8d}  "
            f"{'found' if row.found else 'missing':8s} {checksum}"
        )
        if row.problem:
            lines.append(f"    error: {row.problem}")
        if row.constant_label is not None:
            lines.append(f"    error: {constant_label_problem(row)}")
    return "\n".join(lines)


def constant_label_problem(row: SplitStatus) -> str:
    """'path: every pair has label 3: Spearman is undefined on this split ...' for a split of one label."""
    return (f"{row.path}: every pair has label {row.constant_label:g}, so Spearman is undefined on this split "
            "(each score would be written as `undefined`); is it the right file?")
