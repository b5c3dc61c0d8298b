"""The five Chinese STS tasks as data, and loading their pairs from a senteval_cn data folder.

The registry comes from `stseval/data/manifest.json` (one entry per task: splits, label kind, score range,
max_length, expected rows and sha256 per file, C-MTEB hub name). A data folder has the layout
`DIR/{task}/{task}.{split}.data`; each line is `sentence1<TAB>sentence2<TAB>label`, UTF-8, no header.

Which split files a folder holds, their rows and checksums (`stseval tasks`), is `stseval.data.status`.

Loading a split also validates it: every line needs exactly three fields, two non-empty sentences
and a label that parses and lies in the task's score range. A bad line raises `StsevalError` with
its `file:line`; nothing is dropped silently.

Example:
    >>> from stseval.data.tasks import TASKS, load_pairs, resolve_data_dir
    >>> pairs = load_pairs(TASKS["BQ"], "test", resolve_data_dir(None))
    >>> pairs[4283].sentence2
    '免费领取"饿了么"红包'
"""

from __future__ import annotations

import csv
import difflib
import functools
import hashlib
import importlib.resources
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from stseval.common.errors import StsevalError
from stseval.common.fileio import file_sha256  # noqa: F401 - part of this module's API
from stseval.common.lists import comma_parts

_CHECKOUT = Path(__file__).resolve().parents[2]
# The source checkout holding this package, or None when it runs from an installed wheel.
PROJECT_ROOT: Path | None = _CHECKOUT if (_CHECKOUT / "pyproject.toml").is_file() else None
MANIFEST_PATH = Path(str(importlib.resources.files("stseval.data") / "manifest.json"))  # shipped in the wheel
DATA_DIR_ENV = "STSEVAL_DATA_DIR"
LABEL_KINDS = ("binary", "graded")

# A plain decimal number; float() alone would also accept "nan", "inf" and "1_0".
_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


@dataclass(frozen=True)
class Pair:
    """One sentence pair with its gold score (0/1 for binary tasks, 0-5 for STS-B)."""

    sentence1: str
    sentence2: str
    score: float


@dataclass(frozen=True)
class FileSpec:
    """What the manifest expects of one split file; `sha256` is None where no copy was checked."""

    rows: int
    sha256: str | None
    git_blob: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One STS task as declared in `stseval/data/manifest.json`.

    Attributes:
        name: "ATEC", "BQ", "LCQMC", "PAWSX" or "STS-B"; also the folder and file-name stem.
        splits: the splits the shared data holds, in the order valid/test or train/valid/test.
        label_kind: "binary" (labels 0/1) or "graded" (STS-B, 0-5).
        score_range: (low, high) of the gold scores; used by metrics and validation.
        max_length: tokenizer max_length in tokens (64; PAWSX 128 for its long sentences).
        files: split -> FileSpec for every split the manifest knows, including missing train splits.
        hub_dataset: Hugging Face dataset id used by `stseval data fetch`, e.g. "C-MTEB/STSB".
    """

    name: str
    splits: tuple[str, ...]
    label_kind: str
    score_range: tuple[float, float]
    max_length: int
    files: Mapping[str, FileSpec] = field(hash=False, compare=False)
    hub_dataset: str = ""


def _load_manifest(path: Path) -> tuple[dict, dict[str, TaskSpec]]:
    """Read the manifest and build the TaskSpec registry in manifest order."""
    manifest = json.loads(path.read_text(encoding="utf-8"))
    specs = {}
    for entry in manifest["tasks"]:
        files = {
            split: FileSpec(rows=int(f["rows"]), sha256=f.get("sha256"), git_blob=f.get("git_blob"))
            for split, f in entry["files"].items()
        }
        if entry["label_kind"] not in LABEL_KINDS:
            raise ValueError(f"{path}: {entry['name']}: label_kind must be one of {LABEL_KINDS}")
        low, high = entry["score_range"]
        specs[entry["name"]] = TaskSpec(
            name=entry["name"],
            splits=tuple(entry["splits"]),
            label_kind=entry["label_kind"],
            score_range=(float(low), float(high)),
            max_length=int(entry["max_length"]),
            files=MappingProxyType(files),
            hub_dataset=entry["hub_dataset"],
        )
    return manifest, specs


MANIFEST, TASKS = _load_manifest(MANIFEST_PATH)
FILE_PATTERN: str = MANIFEST["file_pattern"]


TASK_NAMES_HELP = ("Names ignore case, '-', '_' and spaces (STSB, sts-b, STS_B, lcqmc, PAWS-X all work); "
                   "'all' means every task.")


def _canonical(name: str) -> str:
    """Task-name key that ignores case, '-', '_' and spaces, so STSB, sts-b and STS_B all match STS-B."""
    return re.sub(r"[-_\s]", "", name).upper()


def task_by_name(name: str, option: str = "--tasks") -> TaskSpec:
    """The task a user-typed name means (see TASK_NAMES_HELP); every command resolves names here.

    Raises:
        StsevalError naming `option`, with the closest known name when there is one.
    """
    by_key = {_canonical(known): spec for known, spec in TASKS.items()}
    spec = by_key.get(_canonical(name))
    if spec is not None:
        return spec
    close = difflib.get_close_matches(_canonical(name), list(by_key), n=1, cutoff=0.5)
    hint = f"did you mean {by_key[close[0]].name}? " if close else ""
    raise StsevalError(f"{option}: unknown task {name!r}; {hint}choose from {', '.join(TASKS)} or all")


def parse_task_names(text_or_list: str | Iterable[str] | None, option: str = "--tasks") -> list[TaskSpec]:
    """Turn the `--tasks` option into TaskSpecs, in the order given, without duplicates.

    Args:
        text_or_list: "ATEC,BQ", ["ATEC", "PAWSX"], a list of comma-separated items, or "all".
            Names ignore case, '-', '_' and spaces: "STSB" (the C-MTEB name), "sts-b", "PAWS-X".
        option: the option named in errors.
    Returns:
        the matching TaskSpecs.
    Raises:
        StsevalError naming the option for an unknown (with a suggestion) or empty selection.

    Example:
        >>> [spec.name for spec in parse_task_names("stsb, ATEC")]
        ['STS-B', 'ATEC']
    """
    names = comma_parts(text_or_list)
    if not names:
        raise StsevalError(f"{option}: no task given; choose from {', '.join(TASKS)} (comma-separated) or all")
    chosen: dict[str, TaskSpec] = {}
    for name in names:
        if name.lower() == "all":
            chosen.update((spec.name, spec) for spec in TASKS.values() if spec.name not in chosen)
            continue
        spec = task_by_name(name, option)
        chosen.setdefault(spec.name, spec)
    return list(chosen.values())


def split_path(spec: TaskSpec, split: str, data_dir: Path) -> Path:
    """Path of one split file, `data_dir/{task}/{task}.{split}.data`.

    Raises:
        StsevalError if the manifest knows no such split for the task.
    """
    if split not in spec.files:
        raise StsevalError(
            f"{spec.name} has no split {split!r}; choose from {', '.join(spec.files)}"
        )
    return Path(data_dir) / FILE_PATTERN.format(task=spec.name, split=split)


SPLITS = ("train", "valid", "test")


def available_splits(spec: TaskSpec, data_dir: Path) -> list[str]:
    """Splits of the task whose files exist in data_dir, in train, valid, test order: what
    'all-available' means for whiten's --fit-on and simcse-train's --train-on alike (our data lacks
    train for ATEC, LCQMC and PAWSX)."""
    return [split for split in SPLITS if split in spec.files and split_path(spec, split, data_dir).is_file()]


def check_split(tasks: Sequence[TaskSpec], split: str, data_dir: Path, option: str = "--split") -> None:
    """Raise naming `option` unless every task has the split's file in data_dir."""
    for spec in tasks:
        present = available_splits(spec, data_dir)
        if split not in present:
            raise StsevalError(f"{option}: {spec.name} has no {split!r} split in {data_dir} "
                               f"(present: {', '.join(present) or 'none'})")


def _layout_hint() -> str:
    """One-line description of the expected folder layout, for error messages."""
    return (
        f"expected layout DIR/{FILE_PATTERN} (e.g. DIR/ATEC/ATEC.test.data), "
        "lines sentence1<TAB>sentence2<TAB>label in UTF-8"
    )


def _has_task_files(folder: Path) -> bool:
    """True if `folder` holds at least one split file of a known task."""
    return any(
        split_path(spec, split, folder).is_file() for spec in TASKS.values() for split in spec.files
    )


def _why_not(folder: Path) -> str:
    """Why `folder` is not a data folder, in a few words."""
    if not folder.exists():
        return "does not exist"
    if not folder.is_dir():
        return "is not a folder"
    return "holds no task files"


def resolve_data_dir(data_dir: Path | None = None) -> Path:
    """Find the data folder: `--data-dir`, then $STSEVAL_DATA_DIR, then the usual places.

    The search order is: the `data_dir` argument (the `--data-dir` option); the environment
    variable STSEVAL_DATA_DIR; `./data/chinese-sts` under the current directory; `data/chinese-sts`
    under the project root; `../shared/data/chinese-sts` next to the project root; and the same
    next to the current directory. An explicit option or environment variable is used as given: if
    it holds no task files that is an error, never a silent fall-back to another copy.

    Args:
        data_dir: the `--data-dir` option, or None when it was not given.
    Returns:
        the absolute path of the first folder holding at least one `{task}/{task}.{split}.data`.
    Raises:
        StsevalError listing every place looked at and the layout expected.
    """
    if data_dir is not None:
        return _explicit_data_dir(Path(data_dir), "--data-dir")
    from_env = os.environ.get(DATA_DIR_ENV, "").strip()
    if from_env:
        return _explicit_data_dir(Path(from_env), DATA_DIR_ENV)
    cwd = Path.cwd()
    candidates = [(cwd / "data" / "chinese-sts", "./data/chinese-sts")]
    if PROJECT_ROOT is not None:
        candidates += [(PROJECT_ROOT / "data" / "chinese-sts", "data/chinese-sts in the project"),
                       (PROJECT_ROOT.parent / "shared" / "data" / "chinese-sts", "../shared next to the project")]
    candidates.append((cwd.parent / "shared" / "data" / "chinese-sts", "../shared next to the current folder"))
    looked: list[str] = []
    seen: set[Path] = set()
    for folder, label in candidates:
        folder = folder.resolve()
        if folder in seen:
            continue
        seen.add(folder)
        if folder.is_dir() and _has_task_files(folder):
            return folder
        looked.append(f"{folder} ({label}: {_why_not(folder)})")
    raise StsevalError(
        f"no Chinese STS data found; looked in --data-dir (not given), ${DATA_DIR_ENV} (not set), "
        f"{'; '.join(looked)}; {_layout_hint()}; pass --data-dir DIR, set {DATA_DIR_ENV}, "
        "or copy the files in with `stseval data import DIR`"
    )


def _explicit_data_dir(folder: Path, option: str) -> Path:
    """Check a folder the user named; raise naming the option if it holds no task files."""
    folder = folder.expanduser().resolve()
    if folder.is_dir() and _has_task_files(folder):
        return folder
    raise StsevalError(
        f"{option} {folder}: {_why_not(folder)}; {_layout_hint()}; "
        "copy the files in with `stseval data import DIR`"
    )


def _unquote(field_text: str) -> str:
    """Undo the source's CSV quoting: '"a""b"' -> 'a"b'; anything else is returned unchanged.

    The senteval_cn files came out of CSV/TSV writers, which wrapped a sentence holding `"` in
    quotes and doubled the inner ones (BQ test line 4284, some PAWSX lines). A field is unquoted
    only when it has exactly that form, so a stray quote stays part of the sentence.
    """
    if len(field_text) >= 2 and field_text[0] == '"' and field_text[-1] == '"':
        inner = field_text[1:-1]
        if '"' not in inner.replace('""', ""):  # every inner quote is doubled
            return inner.replace('""', '"')
    return field_text


def _parse_label(text: str, spec: TaskSpec) -> float | str:
    """Parse a label; return the score, or a description of what is wrong with it."""
    stripped = text.strip()
    if not _NUMBER_RE.fullmatch(stripped):
        return f"label {text!r} is not a number"
    score = float(stripped)
    low, high = spec.score_range
    if spec.label_kind == "binary":
        if score not in (low, high):
            return f"label {text!r} is not {low:g} or {high:g} (binary task)"
    elif not low <= score <= high:
        return f"label {text!r} is outside the score range {low:g}-{high:g}"
    return score


def _decode(raw: bytes, path: Path) -> str:
    """Decode UTF-8, naming the line of the first bad byte; a leading BOM is dropped."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_number = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        bad = raw[err.start : err.end]
        raise StsevalError(
            f"{path}:{line_number}: byte {bad!r} at column {column} is not valid UTF-8; "
            "re-save the file as UTF-8"
        ) from None
    return text.removeprefix("\ufeff")


def _parse_pairs(path: Path, spec: TaskSpec) -> tuple[Pair, ...]:
    """Read and validate every line of one senteval_cn file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise StsevalError(f"{path}: file not found") from None
    except OSError as err:
        raise StsevalError(f"{path}: cannot read ({err.strerror})") from None
    text = _decode(raw, path)
    if not text.strip():
        raise StsevalError(f"{path}:1: file is empty; expected sentence1<TAB>sentence2<TAB>label lines")
    # Split on "\n" only: str.splitlines() would also break at U+2028, U+0085 and friends, which
    # can occur inside sentences, and line numbers must match what an editor shows.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line, it does not start a new one
    # QUOTE_NONE: the csv module only splits at tabs; quoting is undone per field by _unquote,
    # so a stray quote cannot swallow the tabs and lines after it.
    reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    pairs = []
    line_number = 0
    try:
        for line_number, fields in enumerate(reader, start=1):
            if len(fields) != 3:
                found = "an empty line" if not fields else f"{len(fields)} field(s)"
                raise StsevalError(
                    f"{path}:{line_number}: expected 3 tab-separated fields "
                    f"(sentence1, sentence2, label), found {found}"
                )
            sentence1, sentence2 = _unquote(fields[0]), _unquote(fields[1])
            for column, sentence in (("sentence1", sentence1), ("sentence2", sentence2)):
                if not sentence.strip():
                    raise StsevalError(f"{path}:{line_number}: {column} is empty")
            score = _parse_label(fields[2], spec)
            if isinstance(score, str):
                raise StsevalError(f"{path}:{line_number}: {score}")
            pairs.append(Pair(sentence1, sentence2, score))
    except csv.Error as err:  # a lone carriage return inside a line, or a huge field
        problem = str(err)
        if "new-line character" in problem:
            problem = "carriage return (\\r) inside the line; save the file with LF line endings"
        raise StsevalError(f"{path}:{line_number + 1}: {problem}") from None
    return tuple(pairs)


@functools.lru_cache(maxsize=32)
def _parse_pairs_cached(
    path: Path, stat_key: tuple[int, int, int, int], spec: TaskSpec
) -> tuple[Pair, ...]:
    """_parse_pairs, cached per file version (stat_key changes when the file is rewritten)."""
    return _parse_pairs(path, spec)


def _stat_key(path: Path) -> tuple[int, int, int, int]:
    """(inode, size, mtime_ns, ctime_ns): changes when a file is rewritten or replaced."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise StsevalError(f"{path}: file not found") from None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def read_pairs(path: Path, spec: TaskSpec) -> list[Pair]:
    """Read and validate one senteval_cn file of task `spec`, wherever it lies.

    Args:
        path: a `sentence1<TAB>sentence2<TAB>label` file (UTF-8, no header).
        spec: the task, which decides the label kind and score range.
    Returns:
        one Pair per line, in file order. Fields in the source's CSV-quoted form
        (`"免费领取""饿了么""红包"`) are unquoted; literal sentences such as PAWSX's `NS` stay text.
    Raises:
        StsevalError naming `path:line` for a wrong field count, an empty sentence, a label that is
        not a number or out of range, bytes that are not UTF-8, or an empty file.
    """
    path = Path(path).absolute()
    return list(_parse_pairs_cached(path, _stat_key(path), spec))


def load_pairs(spec: TaskSpec, split: str, data_dir: Path) -> list[Pair]:
    """Load one split of a task from a data folder, validated (see `read_pairs`).

    Results are cached in-process per file version, so commands that reload a split are cheap.

    Args:
        spec: the task, e.g. `TASKS["PAWSX"]`.
        split: "train", "valid" or "test".
        data_dir: a folder in the senteval_cn layout, usually from `resolve_data_dir`.
    Returns:
        the pairs in file order, e.g. 2000 for PAWSX test.
    Raises:
        StsevalError for an unknown split, a missing file (with the fix), or a bad line.
    """
    path = split_path(spec, split, data_dir)
    if not path.is_file():
        expected = spec.files[split]
        if expected.sha256 is None:
            hint = (
                f"the shared data has no {spec.name} {split} split ({expected.rows} pairs expected); "
                f"use one of {', '.join(spec.splits)}, or import a copy with `stseval data import DIR`"
            )
        else:
            hint = "copy the data in with `stseval data import DIR` or point --data-dir at it"
        raise StsevalError(f"{path}: file not found; {hint}")
    return read_pairs(path, spec)


def data_fingerprint(spec: TaskSpec, splits: Sequence[str], data_dir: Path) -> str:
    """Short combined sha256 of the files a result was computed on, for provenance columns.

    Args:
        spec: the task.
        splits: the splits used, e.g. ("test",); order does not matter.
        data_dir: the data folder.
    Returns:
        12 hex characters; equal fingerprints mean byte-identical input files.
    Raises:
        StsevalError if a file is missing.
    """
    digest = hashlib.sha256()
    for split in sorted(set(splits)):
        path = split_path(spec, split, data_dir)
        if not path.is_file():
            raise StsevalError(f"{path}: file not found; cannot fingerprint {spec.name} {split}")
        digest.update(f"{spec.name}/{split}:{file_sha256(path)}\n".encode())
    return digest.hexdigest()[:12]


def read_sentence_lines(path: Path, option: str, min_sentences: int = 1) -> list[str]:
    """Stripped non-empty lines of a UTF-8 file, one sentence each, in file order (duplicates kept).

    Args:
        path: the file.
        option: the command-line option that named it, for error messages ("--fit-on", ...).
        min_sentences: fewer than this is an error.
    Raises:
        StsevalError naming the option and the file when it is missing, not UTF-8, or too short.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise StsevalError(f"{option} {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise StsevalError(f"{option} {path}: cannot read it as UTF-8 text ({err})") from None
    sentences = [line.strip() for line in lines if line.strip()]
    if len(sentences) < min_sentences:
        raise StsevalError(
            f"{option} {path}: {len(sentences)} sentence(s); need at least {min_sentences}, one per line")
    return sentences
