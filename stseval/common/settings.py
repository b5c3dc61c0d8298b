"""Settings as small frozen values, parsed once: a `Pooling` and a `Dropout`.

`--pooling` and `--dropout` (and the API's `pooling=`) are parsed here, once, at the edge; the runs carry
the values; `str()` is the one formatter of the text a results row holds, and `Pooling.parse` /
`Dropout.parse` read that text back. sentence-transformers' `models/Pooling.py` holds its mode the
same way: a fixed tuple of mode names (`POOLING_MODES` there, `POOLING_NAMES` here) and one string
form (`get_pooling_mode_str()` there, `str(pooling)` here). Pure Python: no torch, numpy or pandas,
so a mistyped option fails before anything heavy loads.

Example:
    >>> [str(pooling) for pooling in parse_poolings("cls, layer-avg:0-2")]
    ['cls', 'layer-avg:0', 'layer-avg:1', 'layer-avg:2']
    >>> Pooling.parse("pooler").needs_pooler, Pooling.parse("layer-avg:3").layer
    (True, 3)
    >>> str(Dropout.parse("0.30")), Dropout(0.1).rate
    ('0.3', 0.1)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stseval.common.errors import StsevalError
from stseval.common.lists import comma_parts, did_you_mean

POOLINGS: tuple[str, ...] = (
    "cls",
    "pooler",
    "pooler-tanh",
    "last-avg",
    "first-last-avg",
    "last2avg",
    "max",
)
"""Every token pooling name, in the order grids list them; what `--pooling all` means."""

NEEDS_POOLER: frozenset[str] = frozenset({"pooler", "pooler-tanh"})
"""Poolings that need the model's trained pooler dense layer (BERT's NSP head)."""

SENTENCE_POOLING = "sentence"
"""The one output of encoders that give sentence vectors only (USE, precomputed vectors; see
docs/ENCODERS.md). Transformers have no such output, so their `sentence` cells are n/a."""
POOLING_NAMES: tuple[str, ...] = (*POOLINGS, SENTENCE_POOLING)
"""Every fixed name `--pooling` accepts; 'all' still means the token poolings `POOLINGS`."""
LAYER_AVG = "layer-avg"
"""`layer-avg:N`: the masked token mean of hidden_states[N] (0: the embedding output, static token
embeddings; L: the last layer, = last-avg); `layer-avg:A-B` names every layer from A to B."""

_CHOICES = (f"choose from {', '.join(POOLING_NAMES)} or 'all'; or {LAYER_AVG}:N (hidden_states[N]), "
            f"{LAYER_AVG}:A-B")


@dataclass(frozen=True)
class Pooling:
    """One way a sentence vector is taken from a model: `--pooling`'s value, a results row's `pooling`.

    Attributes:
        kind: a name of `POOLING_NAMES` ("cls", "pooler", ..., "sentence"), or `LAYER_AVG`.
        layer: N of layer-avg:N (0: the embedding output, hidden_states[0]); None for every other kind.
    """

    kind: str
    layer: int | None = None

    def __post_init__(self) -> None:
        if self.kind == LAYER_AVG:
            if not isinstance(self.layer, int) or isinstance(self.layer, bool) or self.layer < 0:
                raise ValueError(f"Pooling({self.kind!r}): layer must be an integer >= 0, got {self.layer!r}")
        elif self.kind not in POOLING_NAMES or self.layer is not None:
            raise ValueError(f"Pooling({self.kind!r}, layer={self.layer!r}): not a pooling; {_CHOICES}")

    @classmethod
    def parse(cls, text: str) -> Pooling:
        """One pooling name, as `--pooling` and rows spell it ('layer-avg:03' is layer-avg:3).

        Raises:
            StsevalError naming --pooling, with a suggestion for a near miss; 'all' and layer ranges
            name several poolings and are `parse_poolings`'s.
        """
        poolings = _expand(str(text).strip().lower())
        if len(poolings) != 1:
            raise StsevalError(f"--pooling: {text!r} names {len(poolings)} poolings; give one")
        return poolings[0]

    @classmethod
    def read(cls, text: object) -> Pooling | None:
        """The lenient reader of a row's `pooling` text (as `str` wrote it, case and all): the Pooling it
        names, or None (e.g. a legacy or foreign row such as 'mean'), never an error."""
        name = str(text)
        head, colon, number = name.partition(":")
        if head == LAYER_AVG and colon and number.isascii() and number.isdigit():
            return cls(LAYER_AVG, int(number))
        return cls(name) if name in POOLING_NAMES else None

    def __str__(self) -> str:
        """The name rows, grids, cache keys and run folders use: 'cls', 'layer-avg:3', ..."""
        return f"{LAYER_AVG}:{self.layer}" if self.kind == LAYER_AVG else self.kind

    @property
    def needs_pooler(self) -> bool:
        """Whether it reads the model's trained pooler dense layer (pooler, pooler-tanh)."""
        return self.kind in NEEDS_POOLER

    @property
    def is_sentence(self) -> bool:
        """Whether it is the sentence-vector output of USE-like and vectors: encoders (no hidden states)."""
        return self.kind == SENTENCE_POOLING

    @property
    def needs_hidden_states(self) -> bool:
        """Whether it is computed from a Transformer's hidden states (every kind but `sentence`)."""
        return not self.is_sentence

    @property
    def is_layer(self) -> bool:
        """Whether it is a layer-avg:N pooling (for evaluating layers; the trainers refuse it)."""
        return self.layer is not None


def _expand(name: str) -> list[Pooling]:
    """One lowercased --pooling item -> its poolings: 'all' -> POOLINGS, 'layer-avg:0-2' -> three, a name -> one."""
    if name == "all":
        return [Pooling(each) for each in POOLINGS]
    if name.startswith(LAYER_AVG):
        return [Pooling(LAYER_AVG, layer) for layer in _layer_range(name)]
    if name not in POOLING_NAMES:
        hint = did_you_mean(name, [*POOLING_NAMES, "all"])
        raise StsevalError(f"--pooling: unknown pooling {name!r}; {hint}{_CHOICES}")
    return [Pooling(name)]


def _layer_range(name: str) -> range:
    """'layer-avg:3' -> range(3, 4); 'layer-avg:0-2' -> range(0, 3); raises naming --pooling."""
    spec = name.partition(":")[2]
    first, dash, last = spec.partition("-")
    if not (name.startswith(LAYER_AVG + ":") and first.isdigit() and (not dash or last.isdigit())):
        raise StsevalError(f"--pooling: {name!r} is not {LAYER_AVG}:N or {LAYER_AVG}:A-B with layer numbers "
                           "(0 is the embedding output)")
    low, high = int(first), int(last) if dash else int(first)
    if high < low:
        raise StsevalError(f"--pooling: {name!r} runs backwards; write {LAYER_AVG}:{high}-{low}")
    return range(low, high + 1)


def parse_poolings(text_or_list: str | Pooling | Iterable[str | Pooling]) -> list[Pooling]:
    """Turn `--pooling` input (or the API's `pooling=`) into poolings, in the order given: the one parser.

    Args:
        text_or_list: "cls,last-avg", "all", a Pooling, or a list such as ["cls", "last-avg"]; items may
            themselves hold commas, or be `Pooling` values (kept as they are). Duplicates are dropped.
    Returns:
        The poolings, e.g. [Pooling("cls"), Pooling("last-avg")]; "all" expands to `POOLINGS` (the token
        poolings); "sentence" (`SENTENCE_POOLING`) must be named; "layer-avg:0-2" expands to layer-avg:0,
        layer-avg:1, layer-avg:2 (checked against a model by `stseval.options.check_layers_within`).
    Raises:
        StsevalError naming `--pooling` when a name is unknown or nothing is given.
    """
    items = [text_or_list] if isinstance(text_or_list, (str, Pooling)) else list(text_or_list)
    poolings: list[Pooling] = []
    for item in items:  # a Pooling value is parsed already: kept as it is, never formatted and read back
        for pooling in [item] if isinstance(item, Pooling) else (
                each for name in comma_parts([item]) for each in _expand(name.lower())):
            if pooling not in poolings:
                poolings.append(pooling)
    if not poolings:
        raise StsevalError(f"--pooling: no pooling given; {_CHOICES}")
    return poolings


def layer_avg_index(name: str | Pooling) -> int | None:
    """N of a 'layer-avg:N' pooling (or its name, as rows hold it), else None."""
    pooling = name if isinstance(name, Pooling) else Pooling.read(name)
    return None if pooling is None else pooling.layer


def pooling_names(poolings: Iterable[Pooling]) -> list[str]:
    """[str(p) for p in poolings]: the names where a value meets code that still takes strings."""
    return [str(pooling) for pooling in poolings]


DROPOUT_OPTION = "--dropout"
DROPOUT_HINT = "Su used 0.1 and 0.3"
"""How an out-of-range --dropout message ends."""


def unit_interval(part: object, option: str, *, closed: bool, hint: str) -> float:
    """One number in [0, 1] (closed) or [0, 1) from option text or a number; every error names `option`.

    The one range check of --dropout, --beta and --gamma: 'x' -> "is not a number in [0, 1)", 1.5 -> "is
    outside [0, 1]; <hint>".
    """
    interval = "[0, 1]" if closed else "[0, 1)"
    if isinstance(part, bool):
        raise StsevalError(f"{option}: {part!r} is not a number in {interval}")
    try:
        value = float(part)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise StsevalError(f"{option}: {part!r} is not a number in {interval}") from None
    if not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
        raise StsevalError(f"{option}: {value!r} is outside {interval}; {hint}")
    return value


def parse_unit_interval(items: str | float | Sequence[str | float], option: str, *, closed: bool, hint: str,
                        example: str) -> list[float]:
    """Comma-separated numbers (`unit_interval` each) -> floats in order, each once; `example` ends the
    message for an empty list."""
    values: list[float] = []
    for part in comma_parts([items] if isinstance(items, (str, float, int)) else list(items)):
        value = unit_interval(part, option, closed=closed, hint=hint)
        if value not in values:
            values.append(value)
    if not values:
        raise StsevalError(f"{option}: give at least one value, e.g. {example}")
    return values


@dataclass(frozen=True)
class Dropout:
    """A SimCSE / CoSENT training dropout probability: `--dropout`'s value, a results row's `dropout`.

    Attributes:
        rate: in [0, 1); checked on construction (StsevalError naming --dropout).
    """

    rate: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", unit_interval(self.rate, DROPOUT_OPTION, closed=False, hint=DROPOUT_HINT))

    @classmethod
    def parse(cls, text: str | float) -> Dropout:
        """One --dropout value, or a row's `dropout` text read back: '0.1' -> Dropout(0.1)."""
        return cls(unit_interval(str(text).strip() if isinstance(text, str) else text, DROPOUT_OPTION,
                                 closed=False, hint=DROPOUT_HINT))

    def __str__(self) -> str:
        """How rows, logs and run folder names write it: f"{rate:g}" ('0.1', '0.3', '0')."""
        return f"{self.rate:g}"

    def __float__(self) -> float:
        return self.rate


def parse_dropouts(text_or_list: str | float | Dropout | Sequence[str | float | Dropout]) -> list[Dropout]:
    """'0.1,0.3' or [0.1, 0.3] -> [Dropout(0.1), Dropout(0.3)], each once; raises StsevalError naming --dropout."""
    items = [text_or_list] if isinstance(text_or_list, (str, float, int, Dropout)) else list(text_or_list)
    rates = parse_unit_interval([float(item) if isinstance(item, Dropout) else item for item in items],
                                DROPOUT_OPTION, closed=False, hint=DROPOUT_HINT, example="0.1,0.3")
    return [Dropout(rate) for rate in rates]
