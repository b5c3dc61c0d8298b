"""Bring task data into a data folder: `stseval data import DIR` and `stseval data fetch`.

`import_folder` validates a folder already in the senteval_cn layout
(`{task}/{task}.{split}.data`), compares checksums with `stseval/data/manifest.json` and copies it into
the data folder atomically. `fetch_from_hub` downloads the C-MTEB copies from the Hugging Face hub,
converts them to the same layout (`rows_to_senteval_lines`) and imports the result the same way.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import SupportsFloat

from stseval.common.errors import StsevalError
from stseval.common.fileio import check_writable_dir
from stseval.data.status import count_lines, git_blob_sha1
from stseval.data.tasks import (
    FILE_PATTERN,
    TASKS,
    TaskSpec,
    file_sha256,
    parse_task_names,
    read_pairs,
)

# C-MTEB split names -> senteval_cn split names.
HUB_SPLITS = {"train": "train", "validation": "valid", "test": "test"}
_OFFLINE_ENV_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}
_LINE_BREAKERS = ("\t", "\n", "\r")


@dataclass(frozen=True)
class ImportedFile:
    """One task file found by an import, with how it compares with the manifest.

    `checksum` is "match" or "differs" when the manifest has a sha256 (or, for the train splits
    nobody has checked yet, a git blob id) for the file, and "unknown" when it has neither.
    """

    task: str
    split: str
    relpath: str  # e.g. "BQ/BQ.test.data"
    rows: int
    expected_rows: int
    sha256: str
    expected_sha256: str | None
    checksum: str


@dataclass(frozen=True)
class ImportReport:
    """What `import_folder` found and copied."""

    src: Path
    dest: Path
    files: tuple[ImportedFile, ...]
    unknown_files: tuple[str, ...]  # paths under src, relative to it, that were not copied
    replaced: tuple[str, ...]  # files in dest that held different bytes before the import

    @property
    def written(self) -> tuple[Path, ...]:
        """Paths of the imported files under dest."""
        return tuple(self.dest / f.relpath for f in self.files)

    def __iter__(self):
        """Iterate over the written paths, so `for path in report` lists what landed in dest."""
        return iter(self.written)

    def __str__(self) -> str:
        return "\n".join(self.summary())

    def summary(self) -> list[str]:
        """Human-readable lines, one per file, for the CLI to print."""
        lines = [f"imported {len(self.files)} file(s) from {self.src} into {self.dest}"]
        for f in self.files:
            rows_note = "" if f.rows == f.expected_rows else f" (manifest: {f.expected_rows})"
            lines.append(f"  {f.relpath:26s} {f.rows:7d} rows{rows_note}  checksum {f.checksum}")
        lines += [f"  replaced: {relpath}" for relpath in self.replaced]
        lines += [f"  unknown file, not copied: {relpath}" for relpath in self.unknown_files]
        return lines


def _known_relpaths() -> dict[str, tuple[TaskSpec, str]]:
    """Relative path in the senteval_cn layout -> (task, split), for every file the manifest knows."""
    return {
        FILE_PATTERN.format(task=spec.name, split=split): (spec, split)
        for spec in TASKS.values()
        for split in spec.files
    }


def _checksum_state(path: Path, sha256: str, spec: TaskSpec, split: str) -> str:
    """'match' / 'differs' against the manifest's sha256 (or git blob id), else 'unknown'."""
    expected = spec.files[split]
    if expected.sha256 is not None:
        return "match" if sha256 == expected.sha256 else "differs"
    if expected.git_blob is not None:
        return "match" if git_blob_sha1(path) == expected.git_blob else "differs"
    return "unknown"


def import_folder(src: Path, dest: Path, overwrite: bool = False) -> ImportReport:
    """Validate a senteval_cn folder and copy its task files into a data folder, all or nothing.

    Every `{task}/{task}.{split}.data` file under `src` is parsed with the same validation as
    `load_pairs`. If any file fails, nothing is copied. Otherwise the files (plus whatever `dest`
    already held) are assembled in a staging folder next to `dest`, which then replaces `dest` by
    rename, so readers never see a half-copied folder. Other files under `src` are listed, not copied.

    Args:
        src: folder in the senteval_cn layout, e.g. a checkout of the files from elsewhere.
        dest: the data folder, e.g. `./data/chinese-sts`; created if missing.
        overwrite: replace files in `dest` that hold different bytes; otherwise that is an error.
    Returns:
        an ImportReport with row counts and checksum states (match / differs / unknown).
    Raises:
        StsevalError if `src` holds no task files, a file fails validation (with its file:line),
        or `dest` holds different copies and `overwrite` is False.
    """
    src = Path(src).expanduser().absolute()
    dest = Path(dest).expanduser().resolve()  # through a symlink, so the swap replaces its target
    if not src.is_dir():
        raise StsevalError(f"{src}: not a folder; expected a folder in the layout {FILE_PATTERN}")
    if dest.resolve() == src.resolve():
        raise StsevalError(f"{src}: source and destination are the same folder")
    # the new folder is staged beside dest and renamed onto it, so dest's parent must take new files
    check_writable_dir(dest.parent if dest.is_dir() else dest, "--dest")
    known = _known_relpaths()
    found: list[tuple[str, TaskSpec, str]] = []
    unknown: list[str] = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        relpath = path.relative_to(src).as_posix()
        if relpath in known:
            found.append((relpath, *known[relpath]))
        else:
            unknown.append(relpath)
    if not found:
        nested = next(
            (p for p in src.iterdir() if p.is_dir() and any((p / r).is_file() for r in known)), None
        )
        hint = f"; did you mean {nested}?" if nested else ""
        raise StsevalError(
            f"{src}: no task files found (expected e.g. {src}/ATEC/ATEC.test.data, layout "
            f"{FILE_PATTERN}; {len(unknown)} other file(s) seen){hint}"
        )

    files, problems = [], []
    for relpath, spec, split in found:
        path = src / relpath
        try:
            read_pairs(path, spec)
        except StsevalError as err:
            problems.append(str(err))
            continue
        sha256 = file_sha256(path)
        files.append(
            ImportedFile(
                task=spec.name,
                split=split,
                relpath=relpath,
                rows=count_lines(path),
                expected_rows=spec.files[split].rows,
                sha256=sha256,
                expected_sha256=spec.files[split].sha256,
                checksum=_checksum_state(path, sha256, spec, split),
            )
        )
    if problems:
        raise StsevalError(
            f"{len(problems)} file(s) under {src} failed validation, nothing was copied: "
            + "; ".join(problems)
        )

    replaced = [f.relpath for f in files if _differs(dest / f.relpath, f.sha256)]
    if replaced and not overwrite:
        raise StsevalError(
            f"{dest} already holds different copies of {', '.join(replaced)}; "
            "nothing was copied; delete them there first, or import with overwrite=True"
        )
    _copy_atomically(src, dest, files)
    return ImportReport(src, dest, tuple(files), tuple(unknown), tuple(replaced))


def _differs(path: Path, sha256: str) -> bool:
    """True if `path` exists and its bytes are not the ones with this sha256."""
    return path.is_file() and file_sha256(path) != sha256


def _copy_atomically(src: Path, dest: Path, files: list[ImportedFile]) -> None:
    """Assemble dest's old contents plus `files` in a sibling staging folder, then swap it in."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and not dest.is_dir():
        raise StsevalError(f"{dest}: exists and is not a folder")
    if dest.is_dir():
        # The swap replaces the whole folder, so only accept one that is a data folder already.
        others = sorted(p.name for p in dest.iterdir() if p.name not in TASKS and p.name != "README.md")
        if others:
            raise StsevalError(
                f"{dest}: holds other things ({', '.join(others[:5])}); "
                "import into an empty folder or an existing data folder"
            )
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = dest.parent / f".{dest.name}.import-{tag}"  # same filesystem, so rename is atomic
    backup = dest.parent / f".{dest.name}.old-{tag}"
    staging.mkdir()  # honours the umask, unlike mkdtemp's 0o700
    try:
        if dest.is_dir():
            shutil.copytree(dest, staging, symlinks=True, dirs_exist_ok=True)
        for f in files:
            target = staging / f.relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / f.relpath, target)
            if file_sha256(target) != f.sha256:
                raise StsevalError(f"{src / f.relpath}: changed while being imported; try again")
        if dest.is_dir():
            os.replace(dest, backup)
            try:
                os.replace(staging, dest)
            except BaseException:
                os.replace(backup, dest)
                raise
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _quote_sentence(sentence: str) -> str:
    """Write a sentence the way the source does: CSV-quoted if it holds `"`, else unchanged."""
    if '"' in sentence:
        return '"' + sentence.replace('"', '""') + '"'
    return sentence


def _sentence_text(value: object, where: str, column: str) -> str:
    """Check one hub sentence and return it in senteval_cn form."""
    if not isinstance(value, str):
        raise StsevalError(f"{where}: {column} is {value!r}, not text")
    if not value.strip():
        raise StsevalError(f"{where}: {column} is empty")
    if any(char in value for char in _LINE_BREAKERS):
        raise StsevalError(
            f"{where}: {column} contains a tab or line break, which a senteval_cn line cannot hold: "
            f"{value!r}; fix the source rows or import cleaned files with `stseval data import DIR`"
        )
    return _quote_sentence(value)


def _label_text(value: object, spec: TaskSpec, where: str) -> str:
    """Check one hub score and write it as the source does: integers as `0`..`5`."""
    try:
        if isinstance(value, str):
            score = float(value.strip())
        elif isinstance(value, SupportsFloat):  # int, float, numpy scalars
            score = float(value)
        else:
            raise TypeError(type(value).__name__)
    except (TypeError, ValueError):
        raise StsevalError(f"{where}: score {value!r} is not a number") from None
    low, high = spec.score_range
    if not math.isfinite(score) or not low <= score <= high:
        raise StsevalError(f"{where}: score {value!r} is outside {low:g}-{high:g}")
    if spec.label_kind == "binary" and score not in (low, high):
        raise StsevalError(f"{where}: score {value!r} is not {low:g} or {high:g} (binary task)")
    return str(int(score)) if score.is_integer() else repr(score)


def rows_to_senteval_lines(
    rows: Iterable[Mapping[str, object]], spec: TaskSpec, source: str = "rows"
) -> list[str]:
    """Convert hub rows (sentence1, sentence2, score) to senteval_cn lines, validating each.

    A sentence holding `"` is written CSV-quoted (`免费领取"饿了么"红包` ->
    `"免费领取""饿了么""红包"`), as in the source files, so `load_pairs` reads it back unchanged.
    Scores are written as integers when integral (all binary labels and the STS-B 0-5 grades).

    Args:
        rows: mappings with keys sentence1, sentence2 and score (or label), e.g. a
            `datasets.Dataset` split of C-MTEB/BQ.
        spec: the task, for the label kind and score range.
        source: what the rows are, for error messages, e.g. "C-MTEB/BQ[test]".
    Returns:
        one line per row, without the trailing newline.
    Raises:
        StsevalError naming the row for an empty sentence, a sentence with a tab or line break
        (the format cannot hold those), or a score that is not a number or out of range.

    Example:
        >>> rows_to_senteval_lines([{"sentence1": "a", "sentence2": 'b"c', "score": 1}], TASKS["BQ"])
        ['a\\t"b""c"\\t1']
    """
    lines = []
    for row_number, row in enumerate(rows, start=1):
        where = f"{source} row {row_number}"
        sentence1 = _sentence_text(row.get("sentence1"), where, "sentence1")
        sentence2 = _sentence_text(row.get("sentence2"), where, "sentence2")
        label = _label_text(row["score"] if "score" in row else row.get("label"), spec, where)
        lines.append(f"{sentence1}\t{sentence2}\t{label}")
    return lines


def _hub_endpoint() -> str:
    """The hub URL, honouring HF_ENDPOINT (mirrors) the way huggingface_hub does."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def check_hub_reachable(timeout_s: float = 10.0) -> None:
    """Fail fast unless a TCP connection to the Hugging Face hub (or the proxy) opens in time.

    Raises:
        StsevalError pointing at `stseval data import DIR` when offline mode is set
        (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE, TRANSFORMERS_OFFLINE) or the host cannot be reached.
    """
    endpoint = _hub_endpoint()
    fix = "download the senteval_cn files elsewhere and use `stseval data import DIR` instead"
    for name in _OFFLINE_ENV_VARS:
        if os.environ.get(name, "").upper() in _TRUE_VALUES:
            raise StsevalError(
                f"cannot reach the Hugging Face hub: {name} is set (offline mode); {fix}"
            )
    url = urllib.parse.urlsplit(endpoint)
    proxy = urllib.request.getproxies().get(url.scheme, "")
    use_proxy = bool(proxy) and not urllib.request.proxy_bypass(url.hostname or "")
    if use_proxy and "://" not in proxy:
        proxy = f"http://{proxy}"  # "host:3128" is a common way to write a proxy
    target = urllib.parse.urlsplit(proxy) if use_proxy else url
    host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
    outcome: list[BaseException] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as err:
            outcome.append(err)

    # getaddrinfo ignores socket timeouts, so the whole attempt runs in a thread we stop waiting for.
    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(timeout_s)
    via = f" via proxy {host}:{port}" if target is not url else ""
    if attempt.is_alive():
        reason = f"no answer in {timeout_s:g} s"
    elif outcome:
        reason = str(outcome[0])
    else:
        return
    raise StsevalError(f"cannot reach the Hugging Face hub at {endpoint}{via} ({reason}); {fix}")


def fetch_from_hub(
    dest: Path,
    tasks: str | Iterable[str] | Iterable[TaskSpec],
    timeout_s: float = 10.0,
    overwrite: bool = False,
) -> ImportReport:
    """Download the C-MTEB copies of the tasks, convert them to senteval_cn, import them into dest.

    Splits map train -> train, validation -> valid, test -> test. The hub copies are not the
    senteval_cn files byte for byte, so the report may say "differs" for their checksums.

    Args:
        dest: the data folder, e.g. `./data/chinese-sts`.
        tasks: task names as for `--tasks`, or TaskSpecs.
        timeout_s: how long the connectivity check waits before giving up, in seconds.
        overwrite: replace differing files already in dest.
    Returns:
        the ImportReport of the converted files.
    Raises:
        StsevalError (within about timeout_s) when the hub cannot be reached, or naming the
        dataset and row when a download or conversion fails.
    """
    check_writable_dir(Path(dest).expanduser(), "--dest")  # before the download, not after it
    items = [tasks] if isinstance(tasks, (str, TaskSpec)) else list(tasks)
    specs = [item for item in items if isinstance(item, TaskSpec)]
    if not items or len(specs) < len(items):  # names (parse_task_names rejects a mixed list)
        specs = parse_task_names([str(item) for item in items])
    check_hub_reachable(timeout_s)
    import datasets  # a core dependency; imported here, not at the top, because it takes seconds to load
    from datasets.exceptions import DatasetsError

    with tempfile.TemporaryDirectory(prefix="stseval-fetch-") as staging:
        for spec in specs:
            try:
                splits = datasets.load_dataset(spec.hub_dataset)
            except (OSError, DatasetsError) as err:
                raise StsevalError(
                    f"{spec.hub_dataset}: download failed ({err}); "
                    "use `stseval data import DIR` with files obtained elsewhere"
                ) from None
            for hub_split, split in HUB_SPLITS.items():
                if hub_split not in splits:
                    continue
                source = f"{spec.hub_dataset}[{hub_split}]"
                lines = rows_to_senteval_lines(splits[hub_split], spec, source)
                if not lines:
                    continue  # an empty split would only fail validation as an empty file
                target = Path(staging) / FILE_PATTERN.format(task=spec.name, split=split)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "w", encoding="utf-8", newline="\n") as handle:
                    handle.write("".join(line + "\n" for line in lines))
        return import_folder(Path(staging), dest, overwrite=overwrite)
