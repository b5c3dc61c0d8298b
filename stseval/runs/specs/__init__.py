"""What a run depends on, parsed once from the command line into small frozen specs.

`FitSource` is a --fit-on (or --train-on) value, `EncodeSpec` how sentences become vectors, and
`WhitenRun`, `SimcseRun` and `SweepRun` everything one command runs on. The `parse_*` functions build
them from the options as typed, checking each value once, with the messages that name the command's own
option; the runs (stseval/runs/whiten.py, simcse.py, retrieval.py) take a spec and check only what needs
the loaded model. Like stseval/options.py this module imports nothing heavy, so a bad option fails fast.

Example:
    >>> FitSource.parse("task:stsb").label
    'task:STS-B'
    >>> FitSource.parse("valid").own_splits(TASKS["BQ"], data_dir)
    ['valid']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stseval import options
from stseval.common.errors import StsevalError
from stseval.common.fileio import check_writable_dir
from stseval.common.lists import did_you_mean
from stseval.common.settings import Dropout, Pooling
from stseval.data.tasks import (  # SPLITS, available_splits, check_split: moved to data, imported by runs too
    SPLITS,
    TASKS,
    TaskSpec,
    available_splits,
    check_split,
    load_pairs,
    parse_task_names,
    resolve_data_dir,
    split_path,
    task_by_name,
)

FIT_ON_CHOICES = ("all-available", "train", "valid", "test", "pooled", "task:NAME", "a file path")
TRAIN_ON_KINDS = ("split", "all-available", "file")


@dataclass(frozen=True)
class FitSource:
    """Sentences that whitening statistics (--fit-on) or SimCSE training (--train-on) come from.

    kind is "split" (value: train, valid or test of the task itself), "all-available" (every split the
    task has), "pooled" (every chosen task), "task" (value: another task's name) or "file" (value: a
    path to a file with one sentence per line).
    """

    kind: str
    value: str = ""

    @classmethod
    def parse(cls, text: str, option: str = "--fit-on") -> FitSource:
        """The source a --fit-on value names; task names are spelled as the registry does (task:stsb
        is task:STS-B, one results cell). Raises StsevalError naming `option` for anything else."""
        if text in ("all-available", "pooled"):
            return cls(text)
        if text in SPLITS:
            return cls("split", text)
        if text.startswith("task:"):
            return cls("task", task_by_name(text[5:], f"{option} {text}").name)
        if Path(text).expanduser().is_file():
            return cls("file", text)
        raise _unknown_source(text, option, FIT_ON_CHOICES)

    @property
    def label(self) -> str:
        """How results rows name the source: the split, 'pooled', 'task:BQ', 'file:<file name>'."""
        if self.kind == "split":
            return self.value
        if self.kind == "task":
            return f"task:{self.value}"
        if self.kind == "file":
            return f"file:{Path(self.value).name}"
        return self.kind

    @property
    def path(self) -> Path:
        """The sentence file of a "file" source."""
        return Path(self.value)

    def own_splits(self, spec: TaskSpec, data_dir: Path) -> list[str]:
        """The splits of `spec` itself this source reads (none for pooled, task:NAME and files)."""
        if self.kind == "all-available":
            return available_splits(spec, data_dir)
        return [self.value] if self.kind == "split" else []

    def fit_splits(self, spec: TaskSpec, data_dir: Path) -> str:
        """The splits behind 'all-available' for this task ("train+valid+test" on BQ, "valid+test" on
        ATEC), else "": rows say it in their fit_splits column."""
        return "+".join(self.own_splits(spec, data_dir)) if self.kind == "all-available" else ""


def _unknown_source(text: str, option: str, choices: Sequence[str]) -> StsevalError:
    """The error for a --fit-on / --train-on value that names nothing: a missing file, a folder, or a
    mistyped choice (with a suggestion); `choices` as the message lists them, the last being the file."""
    path = Path(text).expanduser()
    listed = f"{text!r} is not one of {', '.join(choices)}"
    if path.is_dir():
        return StsevalError(f"{option}: {text} is a folder; give a file with one sentence per line")
    head, colon, rest = text.partition(":")
    if colon and "task:NAME" in choices and did_you_mean(head, ["task"]):  # tsk:BQ
        return StsevalError(f"{option}: {listed}; did you mean task:{rest}?")
    hint = did_you_mean(text, [choice for choice in choices if " " not in choice and ":" not in choice])
    if hint:  # tset, trian, all-avaliable
        return StsevalError(f"{option}: {listed}; {hint.strip()}")
    if "/" in text or "\\" in text or path.suffix or text.startswith("~"):  # meant as a sentence file
        return StsevalError(f"{option}: file not found: {text}")
    return StsevalError(f"{option}: {listed}")


def parse_fit_on(values: Sequence[str], tasks: Sequence[TaskSpec], data_dir: Path) -> tuple[FitSource, ...]:
    """--fit-on values as sources, each once; a split must exist for every task (all-available adapts)."""
    if not values:
        raise StsevalError("--fit-on: give at least one of " + ", ".join(FIT_ON_CHOICES))
    sources = tuple(dict.fromkeys(FitSource.parse(value) for value in values))
    for source in sources:
        for spec in tasks if source.kind == "split" else ():
            present = available_splits(spec, data_dir)
            if source.value not in present:
                raise StsevalError(f"--fit-on: {spec.name} has no {source.value!r} split (present: "
                                   f"{', '.join(present)}); use all-available, another split, pooled, "
                                   "task:NAME or a file")
    return sources


def parse_train_on(text: str, tasks: Sequence[TaskSpec], data_dir: Path) -> FitSource:
    """--train-on: all-available, a split every task has, or an existing file."""
    source = FitSource.parse(text, "--train-on") if text in ("all-available", *SPLITS) or Path(text).is_file() \
        else None
    if source is None or source.kind not in TRAIN_ON_KINDS:
        raise _unknown_source(text, "--train-on", ("all-available", *SPLITS, "a file with one sentence per line"))
    if source.kind == "split":
        check_split(tasks, source.value, data_dir, "--train-on")
    return source


@dataclass(frozen=True)
class EncodeSpec:
    """How sentences become vectors: the model, its poolings and how it runs."""

    model: str  # --model: "default", a local folder or a hub name
    poolings: tuple[Pooling, ...]  # parsed once (stseval.common.settings.parse_poolings)
    prefix: str = ""  # put before every sentence, e.g. "query: " for E5
    batch_size: int = 64  # sentences per encoding batch (does not change the numbers)
    backend: str = "fp32"  # stseval.encoders.backends.BACKENDS; part of the model's name and fingerprint
    processes: int = 1  # encoding worker processes
    precision: str = "fp32"  # options.PRECISIONS: fp32 or bf16 (autocast); part of the model's name and fingerprint
    threads: int | None = None  # torch intra-op threads; None keeps torch's default
    device: str | None = None  # None: cuda when available
    use_cache: bool = True
    show_progress: bool = True
    poolings_from_model: bool = False  # no --pooling given: keep those of `poolings` the loaded model supports


@dataclass(frozen=True)
class WhitenRun:
    """`stseval whiten`: models x poolings x {raw, method x dims x fit_on (x beta x gamma)} on each task's split."""

    encoders: tuple[EncodeSpec, ...]  # one per --model
    tasks: tuple[TaskSpec, ...]
    dims: tuple[int | None, ...]  # None = full dimension
    fit_on: tuple[FitSource, ...]
    data_dir: Path
    out_dir: Path
    split: str = "test"
    n_resamples: int = 1000
    seed: int = 0
    unnormalized: bool = False  # also score whitened vectors by plain dot product
    save_kernel_dir: Path | None = None
    allow_low_rank: bool = False  # score dims above the fit's rank instead of refusing them
    methods: tuple[str, ...] = ("whitening",)  # options.WHITEN_METHODS: whitening, pca, raw-truncate
    betas: tuple[float, ...] = (1.0,)  # whitening's mean exponent: x - beta * mu (Su, kexue.fm/archives/9079)
    gammas: tuple[float, ...] = (1.0,)  # whitening's eigenvalue exponent: diag(lambda)^(-gamma/2)
    choose_on: str | None = None  # a split whose scores pick each family's (beta, gamma, dims); never `split`
    results_name: str = "whiten.csv"

    @property
    def scored_splits(self) -> tuple[str, ...]:
        """The splits every cell is scored on: --split, then --choose-on's."""
        return (self.split,) if self.choose_on is None else (self.split, self.choose_on)

    @property
    def results_path(self) -> Path:
        return self.out_dir / self.results_name


@dataclass(frozen=True)
class TrainingSpec:
    """The SimCSE settings that change the trained weights (all but dropout, pooling and seed)."""

    loss: str = "su"
    batch_size: int = 64
    learning_rate: float = 1e-5
    epochs: int = 1
    checkpoint_steps: int = 100


@dataclass(frozen=True)
class SimcseRun:
    """`stseval simcse-train`: per task x pooling x dropout, score raw, train, score the trained model."""

    encode: EncodeSpec  # the base model; batch_size is the evaluation batch
    tasks: tuple[TaskSpec, ...]
    dropouts: tuple[Dropout, ...]
    train_on: FitSource
    data_dir: Path
    out_dir: Path
    runs_dir: Path = Path("runs")
    training: TrainingSpec = TrainingSpec()
    max_sentences: int | None | str = "auto"  # "auto": Su's 10,000 (PAWSX all); None: all
    seed: int = 0
    split: str = "test"
    max_eval_pairs: int | None = None  # score a seeded sample of this many pairs; None: all
    then_whiten: bool = False
    n_resamples: int = 1000
    curve_pairs: int | None = 1000  # valid pairs of the training curve; None: all; 0: no curve
    eval_steps: int = 20
    keep: str = "best"  # options.SIMCSE_KEEP: the trained model(s) a run folder keeps after scoring
    results_name: str = "simcse.csv"

    @property
    def results_path(self) -> Path:
        return self.out_dir / self.results_name


@dataclass(frozen=True)
class CosentTraining:
    """The CoSENT settings that change the trained weights besides pooling and seed (defaults: Su's)."""

    batch_size: int = 32
    learning_rate: float = 2e-5
    epochs: int = 5
    dropout: Dropout = Dropout(0.1)
    checkpoint_steps: int = 200


@dataclass(frozen=True)
class CosentRun:
    """`stseval cosent-train`: per train task x pooling, train CoSENT, score it on every task's test split."""

    encode: EncodeSpec  # the base model; batch_size is the evaluation batch
    train_tasks: tuple[TaskSpec, ...]  # tasks with a labelled train split (BQ, STS-B)
    tasks: tuple[TaskSpec, ...]  # tasks scored
    data_dir: Path
    out_dir: Path
    runs_dir: Path = Path("runs")
    training: CosentTraining = CosentTraining()
    max_train_pairs: int | None = None  # a seeded sample of the train pairs; None: all
    seed: int = 0
    split: str = "test"
    max_eval_pairs: int | None = None
    then_whiten: bool = False
    n_resamples: int = 1000
    curve_pairs: int | None = 1000  # valid pairs of the train task scored for the curve; None: all; 0: no curve
    eval_steps: int = 200
    results_name: str = "cosent.csv"

    @property
    def results_path(self) -> Path:
        return self.out_dir / self.results_name


@dataclass(frozen=True)
class SweepRun:
    """`stseval index sweep`: retrieval quality and speed against dims, raw truncation vs whitening."""

    encode: EncodeSpec  # one pooling
    tasks: tuple[TaskSpec, ...]
    data_dir: Path
    out_dir: Path
    split: str = "test"
    dims: tuple[int | None, ...] = (None, 256, 128, 64, 32)
    methods: tuple[str, ...] = options.REDUCTION_METHODS
    factory: str = "Flat"
    search_params: str = ""
    top_k: int = 100
    limit: int | None = None  # only the first `limit` pairs of each split
    threads: int | None = None  # FAISS threads while searching; None keeps FAISS's default
    seed: int = 0
    allow_low_rank: bool = False  # whitening k above the corpus's covariance rank instead of refusing it
    results_name: str = "retrieval.csv"

    @property
    def pooling(self) -> Pooling:
        return self.encode.poolings[0]

    @property
    def results_path(self) -> Path:
        return self.out_dir / self.results_name


def parse_one_pooling(text: str) -> Pooling:
    """--pooling of the index commands: exactly one known pooling."""
    poolings = options.parse_poolings(text)
    if len(poolings) != 1:
        raise StsevalError(f"--pooling: give one pooling, got {text!r}")
    return poolings[0]


def check_index_sources(task: object, sentences_file: Path | None, whitening_file: Path | None,
                        whiten_dims: int | None) -> None:
    """`index build`: exactly one corpus (--task or --sentences) and at most one whitening source."""
    if (task is None) == (sentences_file is None):
        raise StsevalError("give exactly one of --task (index a split's sentences) or --sentences FILE")
    if whitening_file is not None and whiten_dims is not None:
        raise StsevalError("give either --whitening FILE or --whiten-dims K, not both")


def _task_specs(tasks: str | Sequence[str | TaskSpec]) -> tuple[TaskSpec, ...]:
    """--tasks as TaskSpecs, in the order given."""
    items = [tasks] if isinstance(tasks, str) else [t.name if isinstance(t, TaskSpec) else t for t in tasks]
    return tuple(parse_task_names(items))


def check_pairs_parse(reads: Sequence[tuple[TaskSpec, Sequence[str]]], data_dir: Path) -> None:
    """Parse every split file a run will read, so a bad line is refused (file:line) before a model loads.

    reads: (task, its splits) pairs; splits whose file is absent are left to the run's own messages.
    Parsed pairs stay in tasks.load_pairs's in-process cache, so the run reads them again for free.
    """
    for spec, splits in reads:
        for split in dict.fromkeys(splits):
            if split_path(spec, split, data_dir).is_file():
                load_pairs(spec, split, data_dir)


def _data_dir(specs: Sequence[TaskSpec], split: str, data_dir: Path | None) -> Path:
    """The data folder (--data-dir or the usual places), every task holding --split there."""
    folder = resolve_data_dir(data_dir)
    check_split(specs, split, folder)
    return folder


def parse_whiten_run(*, models: Sequence[str], poolings: str | Sequence[str] | None, dims: str,
                     tasks: str | Sequence[str], fit_on: Sequence[str], split: str = "test", prefix: str = "",
                     out: Path = Path("runs/whitening"), data_dir: Path | None = None, batch_size: int = 64,
                     n_resamples: int = 1000, seed: int = 0, unnormalized: bool = False,
                     save_kernel: Path | None = None, allow_low_rank: bool = False, backend: str = "fp32",
                     processes: int = 1, show_progress: bool = True, methods: str = "whitening", beta: str = "1",
                     gamma: str = "1", choose_on: str | None = None, precision: str = "fp32",
                     threads: int | None = None) -> WhitenRun:
    """The `whiten` options as a WhitenRun, every value checked that needs no model loaded.

    poolings None (no --pooling): `options.WHITEN_DEFAULT_POOLINGS`, narrowed to the model's own when it loads.
    """
    options.check_precision(precision, backend)
    options.check_threads(threads)
    specs = _task_specs(tasks)
    from_model = poolings is None
    parsed = options.WHITEN_DEFAULT_POOLINGS if poolings is None else tuple(options.parse_poolings(poolings))
    dims_list = tuple(options.parse_dims(dims))
    method_list = tuple(options.parse_methods(methods, options.WHITEN_METHODS))
    betas, gammas = tuple(options.parse_exponents(beta, "--beta")), tuple(options.parse_exponents(gamma, "--gamma"))
    if "whitening" not in method_list and (betas, gammas) != ((1.0,), (1.0,)):
        raise StsevalError("--beta / --gamma: they set the whitening method's exponents; add whitening to --methods "
                           f"(got {','.join(method_list)}; pca is beta = gamma = 0 already)")
    folder = _data_dir(specs, split, data_dir)
    if choose_on is not None:
        check_choose_on(choose_on, split, specs, folder)
    sources = parse_fit_on(list(fit_on), specs, folder)
    for model in models:
        options.check_model_folder(model)
        options.check_dims_fit(dims_list, model)
        options.check_layers_fit(parsed, model)
    check_writable_dir(Path(out), "--out")
    if save_kernel is not None:
        check_writable_dir(Path(save_kernel), "--save-kernel")
    check_pairs_parse(_whiten_reads(specs, (split, *([choose_on] if choose_on else [])), sources, folder), folder)
    encoders = tuple(EncodeSpec(model=model, poolings=parsed, prefix=prefix, batch_size=batch_size,
                                backend=backend, processes=processes, show_progress=show_progress,
                                precision=precision, threads=threads, poolings_from_model=from_model)
                     for model in dict.fromkeys(models))
    return WhitenRun(encoders=encoders, tasks=specs, dims=dims_list, fit_on=sources, data_dir=folder,
                     out_dir=Path(out), split=split, n_resamples=n_resamples, seed=seed, unnormalized=unnormalized,
                     save_kernel_dir=save_kernel, allow_low_rank=allow_low_rank, methods=method_list, betas=betas,
                     gammas=gammas, choose_on=choose_on)


def _whiten_reads(specs: Sequence[TaskSpec], scored: Sequence[str], sources: Sequence[FitSource],
                  data_dir: Path) -> list[tuple[TaskSpec, list[str]]]:
    """The (task, splits) a whiten run reads: the scored splits and each --fit-on source's splits."""
    reads = [(spec, [*scored, *(split for source in sources for split in source.own_splits(spec, data_dir))])
             for spec in specs]
    for source in sources:
        others = specs if source.kind == "pooled" else [task_by_name(source.value)] if source.kind == "task" else []
        reads += [(spec, available_splits(spec, data_dir)) for spec in others]
    return reads


def check_choose_on(choose_on: str, split: str, tasks: Sequence[TaskSpec], data_dir: Path) -> None:
    """--choose-on: a split every task has, and never the --split that is reported (no tuning on test)."""
    if choose_on not in SPLITS:
        raise StsevalError(f"--choose-on: {choose_on!r} is not one of {', '.join(SPLITS)}")
    if choose_on == split:
        raise StsevalError(f"--choose-on {choose_on}: is the --split the chosen rows are reported on; choosing on "
                           "it would tune on the evaluation pairs. Choose on another split, e.g. --choose-on valid")
    check_split(tasks, choose_on, data_dir, "--choose-on")


def parse_simcse_run(*, model: str, tasks: str | Sequence[str], poolings: str | Sequence[str],
                     dropouts: str | Sequence[float], train_on: str = "all-available",
                     max_sentences: str | int | None = "auto", loss: str = "su", batch_size: int = 64,
                     learning_rate: float = 1e-5, epochs: int = 1, checkpoint_steps: int = 100, seed: int = 0,
                     prefix: str = "", split: str = "test", max_eval_pairs: int | None = None,
                     data_dir: Path | None = None, out: Path = Path("runs/simcse"), runs_dir: Path = Path("runs"),
                     then_whiten: bool = False, n_resamples: int = 1000, eval_batch_size: int = 64,
                     device: str | None = None, curve_pairs: int | None = 1000, eval_steps: int = 20,
                     show_progress: bool = True, precision: str = "fp32", threads: int | None = None,
                     keep: str = "best") -> SimcseRun:
    """The `simcse-train` options as a SimcseRun, every value checked that needs no model loaded."""
    options.check_precision(precision, "fp32", device)
    options.check_threads(threads)
    options.check_model_folder(model)
    specs = _task_specs(tasks)
    parsed = tuple(options.parse_poolings(poolings))
    layered = [pooling for pooling in parsed if pooling.is_layer]
    if layered:
        raise StsevalError(f"--pooling {layered[0]}: simcse-train does not train on layer-avg:N poolings; "
                           "they are for evaluation (stseval whiten --pooling layer-avg:0-12)")
    rates = tuple(options.parse_dropouts(dropouts))
    if keep not in options.SIMCSE_KEEP:
        raise StsevalError(f"--keep: {keep!r} is not one of {', '.join(options.SIMCSE_KEEP)}")
    training = TrainingSpec(loss=options.check_loss(loss), batch_size=batch_size,
                            learning_rate=options.check_learning_rate(learning_rate), epochs=epochs,
                            checkpoint_steps=checkpoint_steps)
    cap = options.parse_max_sentences(max_sentences)
    options.check_at_least([("--batch-size", batch_size, 2), ("--epochs", epochs, 1),
                            ("--checkpoint-steps", checkpoint_steps, 1), ("--eval-steps", eval_steps, 1)])
    options.check_pairs_for_spearman("--max-eval-pairs", max_eval_pairs)
    options.check_pairs_for_spearman("--curve-pairs", curve_pairs, off=" (0 turns the curve off)")
    folder = _data_dir(specs, split, data_dir)
    source = parse_train_on(train_on, specs, folder)
    check_writable_dir(Path(out), "--out")
    check_writable_dir(Path(runs_dir) / "simcse", "--runs-dir")
    check_pairs_parse([(spec, [split, *source.own_splits(spec, folder), *(["valid"] if curve_pairs != 0 else [])])
                       for spec in specs], folder)
    encode = EncodeSpec(model=model, poolings=parsed, prefix=prefix, batch_size=eval_batch_size,
                        device=device, show_progress=show_progress, precision=precision, threads=threads)
    return SimcseRun(encode=encode, tasks=specs, dropouts=rates, train_on=source, data_dir=folder, out_dir=Path(out),
                     runs_dir=Path(runs_dir), training=training, max_sentences=cap, seed=seed, split=split,
                     max_eval_pairs=max_eval_pairs, then_whiten=then_whiten, n_resamples=n_resamples,
                     curve_pairs=curve_pairs, eval_steps=eval_steps, keep=keep)


def parse_cosent_run(*, model: str, train_on: str | Sequence[str], tasks: str | Sequence[str],
                     poolings: str | Sequence[str], batch_size: int = 32, learning_rate: float = 2e-5,
                     epochs: int = 5, checkpoint_steps: int = 200, max_train_pairs: int | None = None, seed: int = 0,
                     prefix: str = "", split: str = "test", max_eval_pairs: int | None = None,
                     data_dir: Path | None = None, out: Path = Path("runs/cosent"), runs_dir: Path = Path("runs"),
                     then_whiten: bool = False, n_resamples: int = 1000, eval_batch_size: int = 64,
                     device: str | None = None, curve_pairs: int | None = 1000, eval_steps: int = 200,
                     show_progress: bool = True, precision: str = "fp32", threads: int | None = None) -> CosentRun:
    """The `cosent-train` options as a CosentRun, every value checked that needs no model loaded.

    Raises:
        StsevalError naming --train-on for a task without a labelled train split (with the splits it
        has and the tasks that do have one), or naming the first other bad option.
    """
    options.check_precision(precision, "fp32", device)
    options.check_threads(threads)
    options.check_model_folder(model)
    train_specs = _task_specs(train_on)
    specs = _task_specs(tasks)
    parsed = tuple(options.parse_poolings(poolings))
    layered = [pooling for pooling in parsed if pooling.is_layer]
    if layered:
        raise StsevalError(f"--pooling {layered[0]}: cosent-train does not train on layer-avg:N poolings")
    options.check_at_least([("--batch-size", batch_size, 2), ("--epochs", epochs, 1),
                            ("--checkpoint-steps", checkpoint_steps, 1), ("--eval-steps", eval_steps, 1),
                            ("--max-train-pairs", max_train_pairs, 2)])
    options.check_learning_rate(learning_rate)
    options.check_pairs_for_spearman("--max-eval-pairs", max_eval_pairs)
    options.check_pairs_for_spearman("--curve-pairs", curve_pairs, off=" (0 turns the curve off)")
    folder = _data_dir(specs, split, data_dir)
    with_train = [spec.name for spec in TASKS.values() if "train" in available_splits(spec, folder)]
    for spec in train_specs:
        if "train" not in available_splits(spec, folder):
            raise StsevalError(f"--train-on {spec.name}: {folder} has no train split of {spec.name} (it has "
                               f"{', '.join(available_splits(spec, folder)) or 'no splits'}); CoSENT trains on "
                               f"labelled train pairs: choose from {', '.join(with_train) or 'none here'}")
    check_writable_dir(Path(out), "--out")
    check_writable_dir(Path(runs_dir) / "cosent", "--runs-dir")
    check_pairs_parse([(spec, [split]) for spec in specs]
                      + [(spec, ["train", *(["valid"] if curve_pairs != 0 else [])]) for spec in train_specs], folder)
    encode = EncodeSpec(model=model, poolings=parsed, prefix=prefix, batch_size=eval_batch_size,
                        device=device, show_progress=show_progress, precision=precision, threads=threads)
    training = CosentTraining(batch_size=batch_size, learning_rate=learning_rate, epochs=epochs,
                              checkpoint_steps=checkpoint_steps)
    return CosentRun(encode=encode, train_tasks=train_specs, tasks=specs, data_dir=folder, out_dir=Path(out),
                     runs_dir=Path(runs_dir), training=training, max_train_pairs=max_train_pairs, seed=seed,
                     split=split, max_eval_pairs=max_eval_pairs, then_whiten=then_whiten, n_resamples=n_resamples,
                     curve_pairs=curve_pairs, eval_steps=eval_steps)


def parse_sweep_run(*, model: str, tasks: str | Sequence[str], pooling: str = "last-avg", split: str = "test",
                    prefix: str = "", dims: str = "full,256,128,64,32", methods: str = "raw-truncate,whitening",
                    factory: str = "Flat", search_params: str = "", top_k: int = 100, limit: int | None = None,
                    threads: int | None = None, out: Path = Path("runs/retrieval"), data_dir: Path | None = None,
                    batch_size: int = 64, seed: int = 0, use_cache: bool = True,
                    show_progress: bool = True, allow_low_rank: bool = False, precision: str = "fp32") -> SweepRun:
    """The `index sweep` options as a SweepRun, every value checked that needs no model loaded.

    threads pins both FAISS's threads (the search) and torch's (the encoding)."""
    options.check_precision(precision)
    options.check_threads(threads)
    specs = _task_specs(tasks)
    dims_list, method_list = tuple(options.parse_dims(dims)), tuple(options.parse_methods(methods))
    parsed = (parse_one_pooling(pooling),)
    if top_k < 10:
        raise StsevalError(f"--top-k {top_k}: must be at least 10 (recall@10, MRR@10, nDCG@10)")
    options.check_at_least([("--limit", limit, 1), ("--threads", threads, 1)])
    folder = _data_dir(specs, split, data_dir)
    options.check_model_folder(model)
    options.check_dims_fit(dims_list, model)
    options.check_layers_fit(parsed, model)
    check_writable_dir(Path(out), "--out")
    check_pairs_parse([(spec, [split]) for spec in specs], folder)
    encode = EncodeSpec(model=model, poolings=parsed, prefix=prefix, batch_size=batch_size,
                        use_cache=use_cache, show_progress=show_progress, precision=precision, threads=threads)
    return SweepRun(encode=encode, tasks=specs, data_dir=folder, out_dir=Path(out), split=split, dims=dims_list,
                    methods=method_list, factory=factory, search_params=search_params, top_k=top_k, limit=limit,
                    threads=threads, seed=seed, allow_low_rank=allow_low_rank)
