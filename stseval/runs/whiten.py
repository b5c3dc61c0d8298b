"""The `stseval whiten` grid: encode each task once per model, then score raw and whitened cells.

Cells are (model, pooling, method, dims, fit_on, task, split). Each finished task's rows are written to
the long-format results file at once, so Ctrl-C loses at most the task being scored and a re-run
skips what is already there.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from stseval.common.errors import StsevalError
from stseval.common.fileio import check_writable_dir
from stseval.evaluation.scoring import SplitVectors, encode_splits, score_pairs
from stseval.options import FIT_ON_CHOICES, parse_dims, validate_fit_on  # noqa: F401 - re-exported
from stseval.runs.results import ResultRow, ResultsFile, cell_key, provenance
from stseval.data.tasks import TASKS, TaskSpec, data_fingerprint, read_sentence_lines, split_path
from stseval.methods.whitening import RELATIVE_EIGENVALUE_FLOOR, Whitening, fit_whitening, save_whitening


@dataclass
class WhitenSettings:
    """Everything a whitening grid depends on, as parsed from the command line."""

    models: list[str]
    poolings: list[str]
    dims: list[int | None]  # None = full dimension
    tasks: list[TaskSpec]
    fit_on: list[str] = field(default_factory=lambda: ["all-available"])
    split: str = "test"
    prefix: str = ""
    data_dir: Path = Path(".")
    out_dir: Path = Path("runs/whitening")
    results_name: str = "whiten.csv"
    batch_size: int = 64
    n_resamples: int = 1000
    seed: int = 0
    unnormalized: bool = False  # also score whitened vectors by plain dot product
    save_kernel_dir: Path | None = None
    show_progress: bool = True
    allow_low_rank: bool = False  # score dims above the fit's rank instead of refusing them
    backend: str = "fp32"  # stseval.encoders.backends.BACKENDS; part of the model's name and fingerprint in rows
    processes: int = 1  # encoding worker processes


def available_splits(spec: TaskSpec, data_dir: Path) -> list[str]:
    """Splits of the task whose files exist in data_dir (our data lacks train for ATEC, LCQMC, PAWSX)."""
    return [split for split in spec.splits if split_path(spec, split, data_dir).is_file()]


def dims_label(dims: int | None) -> str:
    return "full" if dims is None else str(dims)


def run_whiten_grid(settings: WhitenSettings, log: Callable[[str], None] = print) -> Path:
    """Run every (model, task, pooling, method, dims, fit_on) cell not yet in the results file.

    Returns:
        the long-format results CSV path.
    """
    from stseval.encoders.cache import EmbeddingCache, check_home_writable, default_cache_root
    from stseval.encoders.encoder import load_encoder

    check_writable_dir(settings.out_dir, "--out")
    if settings.save_kernel_dir is not None:
        check_writable_dir(settings.save_kernel_dir, "--save-kernel")
    check_home_writable()
    results = ResultsFile(settings.out_dir / settings.results_name)
    cache = EmbeddingCache(default_cache_root())
    base = provenance(settings.seed)
    for model_name in settings.models:
        encoder = load_encoder(model_name, backend=settings.backend, processes=settings.processes)
        dimension = encoder.dimension
        too_big = [d for d in settings.dims if d is not None and d > dimension]
        if too_big:
            raise StsevalError(f"--dims: {too_big[0]} is larger than {encoder.name}'s vector size {dimension}")
        _check_file_fits_rank(settings, dimension)
        plans = {spec.name: _task_plan(settings, spec, encoder, base) for spec in settings.tasks}
        for plan in plans.values():  # before computing: a conflicting row would poison the folder
            results.check_compatible(plan.rows)
        for spec in settings.tasks:
            plan = plans[spec.name]
            pending = [row for row in plan.rows if not results.has(cell_key(row))]
            # a finished cell is still redone when this run asks it for something it has not made yet
            missing_kernels = [row for row in plan.rows if results.has(cell_key(row))
                               and _kernel_missing(settings, encoder, spec, row)]
            pending += missing_kernels
            if not pending:
                log(f"{encoder.name} {spec.name}: all {len(plan.rows)} cells done, skipping")
                continue
            kernels_note = f" ({len(missing_kernels)} done but without their --save-kernel file)" if missing_kernels else ""
            log(f"{encoder.name} {spec.name}: {len(pending)} of {len(plan.rows)} cells to compute{kernels_note}")
            rows = _score_task(settings, spec, encoder, plan, {cell_key(r) for r in pending}, cache)
            results.add(rows)
    return results.path


@dataclass
class _TaskPlan:
    """The cells of one task for one model, with their provenance filled in but no values yet."""

    rows: list[ResultRow]
    supported_poolings: list[str]
    encode_splits: list[str]


def _methods(settings: WhitenSettings) -> list[tuple[str, str]]:
    """(method, metric) pairs scored after whitening."""
    methods = [("whitening", "spearman_cosine")]
    if settings.unnormalized:
        methods.append(("whitening-unnormalized", "spearman_dot"))
    return methods


def _task_plan(settings: WhitenSettings, spec: TaskSpec, encoder, base: dict) -> _TaskPlan:
    present = available_splits(spec, settings.data_dir)
    if settings.split not in present:
        raise StsevalError(f"--split: {spec.name} has no {settings.split!r} split in {settings.data_dir} "
                           f"(present: {', '.join(present) or 'none'})")
    own_fits = [fit for fit in settings.fit_on if fit in ("train", "valid", "test", "all-available")]
    for fit in own_fits:
        if fit != "all-available" and fit not in present:
            raise StsevalError(f"--fit-on: {spec.name} has no {fit!r} split (present: {', '.join(present)}); "
                               "use all-available, another split, pooled, task:NAME or a file")
    needed = {settings.split} | {fit for fit in own_fits if fit != "all-available"}
    if "all-available" in own_fits:
        needed |= set(present)
    encode_split_names = [split for split in present if split in needed]
    common = dict(
        model=encoder.name, model_fingerprint=encoder.fingerprint, task=spec.name, split=settings.split,
        prefix=settings.prefix, data_sha256=data_fingerprint(spec, present, settings.data_dir),
        **{k: v for k, v in base.items() if k != "seed"}, seed=settings.seed,
    )
    rows = []
    for pooling in settings.poolings:
        rows.append(ResultRow(pooling=pooling, method="raw", metric="spearman_cosine", value=np.nan, **common))
        for fit in settings.fit_on:
            for dims in settings.dims:
                for method, metric in _methods(settings):
                    rows.append(ResultRow(pooling=pooling, method=method, metric=metric, value=np.nan,
                                          dims=dims_label(dims), fit_on=_fit_label(fit), **common))
    unique_rows = list({cell_key(row): row for row in rows}.values())  # a repeated option value is one cell
    return _TaskPlan(unique_rows, _supported(encoder, settings.poolings), encode_split_names)


def _fit_label(fit: str) -> str:
    """The --fit-on value as results rows name it; a file by its name. The splits behind
    'all-available' differ by task, so they go into the row's `extra` (fit_splits=...)."""
    if fit in ("all-available", "train", "valid", "test", "pooled") or fit.startswith("task:"):
        return fit
    return f"file:{Path(fit).name}"


def _score_task(settings: WhitenSettings, spec: TaskSpec, encoder, plan: _TaskPlan, pending: set, cache) -> list[ResultRow]:
    if not plan.supported_poolings:  # e.g. --pooling pooler alone on a model without one: n/a cells, no encoding
        return [_not_available(row, encoder) for row in plan.rows if cell_key(row) in pending]
    encoded = encode_splits(encoder, spec, plan.encode_splits, plan.supported_poolings, settings.data_dir,
                            prefix=settings.prefix, batch_size=settings.batch_size, cache=cache,
                            show_progress=settings.show_progress)
    evaluated = encoded[settings.split]
    gold = evaluated.gold_scores
    fits: dict[tuple[str, str], Whitening] = {}
    fit_sources: dict[str, dict[str, np.ndarray]] = {}  # fit_on -> pooling -> vectors, for sources outside the task
    done = []
    for row in plan.rows:
        if cell_key(row) not in pending:
            continue
        if row.pooling not in plan.supported_poolings:
            done.append(_not_available(row, encoder))
            continue
        started = time.perf_counter()
        vectors_a, vectors_b = evaluated.vectors_a[row.pooling], evaluated.vectors_b[row.pooling]
        if row.method != "raw":
            fit_key = (row.pooling, row.fit_on)
            if fit_key not in fits:
                fit_vectors = _fit_vectors(settings, spec, encoder, encoded, row.fit_on, row.pooling,
                                           plan.supported_poolings, cache, fit_sources)
                mu, kernel = fit_whitening(fit_vectors)
                fits[fit_key] = Whitening(mu, kernel, {
                    "model": encoder.name, "model_fingerprint": encoder.fingerprint, "pooling": row.pooling,
                    "prefix": settings.prefix, "task": spec.name, "fit_on": row.fit_on,
                    "fit_splits": _fit_splits(row.fit_on, encoded),
                    "n_fit_vectors": int(len(fit_vectors)), "rank": _fit_rank(kernel, len(fit_vectors)),
                    "max_length": spec.max_length})
            whitening = fits[fit_key]
            n_fit, rank = whitening.provenance["n_fit_vectors"], whitening.provenance["rank"]
            n_components = whitening.n_components if row.dims == "full" else int(row.dims)
            if n_components > _supported_dims(n_fit, rank, whitening.mu.shape[1]) and not settings.allow_low_rank:
                raise StsevalError(_low_rank_message(row.fit_on, n_fit, whitening.mu.shape[1], rank, row.dims,
                                                     n_components))
            row.n_fit, row.fit_rank = n_fit, rank
            if row.dims != "full":
                whitening = whitening.truncate(int(row.dims))
            fit_splits = whitening.provenance["fit_splits"]
            row.extra = (f"fit_splits={fit_splits};" if fit_splits else "") + \
                f"n_fit_vectors={whitening.provenance['n_fit_vectors']}"
            vectors_a, vectors_b = whitening.apply(vectors_a), whitening.apply(vectors_b)
            if settings.save_kernel_dir is not None and row.method == "whitening":
                save_whitening(whitening, kernel_path(settings.save_kernel_dir, encoder.name, spec.name, row))
        score = score_pairs(vectors_a, vectors_b, gold, settings.n_resamples, settings.seed,
                            normalize=row.metric != "spearman_dot")
        row.value, row.ci_low, row.ci_high, row.n_pairs = score.spearman, score.ci_low, score.ci_high, score.n_pairs
        row.seconds = round(time.perf_counter() - started, 3)
        row.created_at = _now()  # when this cell was computed, not when the run started
        done.append(row)
    return done


def _not_available(row: ResultRow, encoder) -> ResultRow:
    """Mark a row of a pooling the model cannot produce (pooler without trained pooler weights) n/a."""
    row.status, row.extra = "n/a", f"{encoder.name} has no {row.pooling} output"
    return row


def _fit_rank(kernel: np.ndarray, n_fit: int) -> int:
    """Rank of the covariance a (d, d) kernel was fitted on: the directions the fit saw.

    kernel = U diag(1/sqrt(s)) with orthonormal U, so column i has squared norm 1/s_i; directions whose
    eigenvalue was raised to whitening's floor are the ones the data had no variance in. n vectors span
    at most n - 1 directions around their mean.
    """
    eigenvalues = 1.0 / np.square(kernel.astype(np.float64)).sum(axis=0)
    floor = eigenvalues[0] * RELATIVE_EIGENVALUE_FLOOR * 1.01  # a little above it: the kernel is float32
    return int(min(np.count_nonzero(eigenvalues > floor), max(n_fit - 1, 0)))


def _supported_dims(n_fit: int, rank: int, dimension: int) -> int:
    """The most whitened directions a fit of `n_fit` vectors with covariance `rank` can stand behind.

    Post-LayerNorm vectors (cls, last-avg of BERT-style models) obey one linear constraint, so their
    covariance has rank d - 1 however many sentences are fitted (e5-small cls: 383 of 384). The direction
    missing is one the scored vectors lack as well, so keeping it changes no score: with enough vectors
    to span d, one missing direction is the model's, not the fit's.
    """
    if n_fit > dimension and rank == dimension - 1:
        return dimension
    return rank


def _low_rank_message(fit_label: str, n_fit: int, dimension: int, rank: int, dims: str, n_components: int) -> str:
    """Why k whitened directions cannot all come from this fit, and the ways out."""
    why = " (fewer vectors than dimensions)" if n_fit <= dimension else ""
    return (f"--fit-on {fit_label}: {n_fit} vectors of {dimension} dims have covariance rank {rank}{why}, "
            f"so --dims {dims} would keep {n_components - rank} direction(s) the fit never saw; give --dims "
            f"{rank} or less, fit on more sentences, or pass --allow-low-rank to score it anyway")


def _check_file_fits_rank(settings: WhitenSettings, dimension: int) -> None:
    """Refuse a --fit-on file too short for the --dims asked before anything is encoded."""
    if settings.allow_low_rank:
        return
    widest = max(dimension if dims is None else dims for dims in settings.dims)
    for fit in settings.fit_on:
        if _fit_label(fit).startswith("file:"):
            n_fit = len(read_sentence_lines(Path(fit), "--fit-on", min_sentences=2))
            if n_fit - 1 < widest:  # n vectors span at most n - 1 directions around their mean
                label = "full" if widest == dimension else str(widest)
                raise StsevalError(_low_rank_message(_fit_label(fit), n_fit, dimension, n_fit - 1, label, widest))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def kernel_path(folder: Path, model: str, task: str, row: ResultRow) -> Path:
    """Where --save-kernel puts the whitening of one cell: <model>_<pooling>_<task>_fit-<fit_on>_<dims>.npz."""
    return Path(folder) / f"{slugify(model)}_{row.pooling}_{task}_fit-{slugify(row.fit_on)}_{row.dims}.npz"


def _kernel_missing(settings: WhitenSettings, encoder, spec: TaskSpec, row: ResultRow) -> bool:
    """Whether --save-kernel asks for this cell's kernel file and it is not there."""
    return (settings.save_kernel_dir is not None and row.method == "whitening"
            and row.pooling in _supported(encoder, settings.poolings)
            and not kernel_path(settings.save_kernel_dir, encoder.name, spec.name, row).is_file())


def _supported(encoder, poolings: list[str]) -> list[str]:
    return [p for p in dict.fromkeys(poolings) if encoder.supports(p)]


def _fit_splits(fit: str, encoded: dict[str, SplitVectors]) -> str:
    """The splits behind 'all-available' for this task ("train+valid+test" on BQ, "valid+test" on ATEC), else ""."""
    return "+".join(encoded) if fit == "all-available" else ""


def _fit_vectors(settings: WhitenSettings, spec: TaskSpec, encoder, encoded: dict[str, SplitVectors], fit: str,
                 pooling: str, poolings: list[str], cache, memo: dict) -> np.ndarray:
    """(n, d) vectors whose statistics the whitening for `fit` (a row's fit_on) is fitted on."""
    if fit == "all-available":
        return np.concatenate([encoded[split].all_vectors(pooling) for split in encoded])
    if fit in encoded:
        return encoded[fit].all_vectors(pooling)
    if fit not in memo:  # other sources are encoded once for every pooling, not once per pooling
        memo[fit] = _encode_fit_source(settings, spec, encoder, fit, poolings, cache)
    return memo[fit][pooling]


def _encode_fit_source(settings: WhitenSettings, spec: TaskSpec, encoder, fit: str, poolings: list[str],
                       cache) -> dict[str, np.ndarray]:
    """pooling -> (n, d) vectors of a source outside the task: pooled tasks, task:NAME or a sentence file."""
    if fit == "pooled" or fit.startswith("task:"):
        sources = settings.tasks if fit == "pooled" else [TASKS[fit[5:]]]
        parts: dict[str, list[np.ndarray]] = {pooling: [] for pooling in poolings}
        for source in sources:
            present = available_splits(source, settings.data_dir)
            other = encode_splits(encoder, source, present, poolings, settings.data_dir, prefix=settings.prefix,
                                  batch_size=settings.batch_size, cache=cache, show_progress=settings.show_progress)
            for pooling in poolings:
                parts[pooling].extend(split_vectors.all_vectors(pooling) for split_vectors in other.values())
        return {pooling: np.concatenate(vectors) for pooling, vectors in parts.items()}
    from stseval.encoders.encoder import encode

    path = next(Path(value) for value in settings.fit_on if _fit_label(value) == fit)
    return encode(encoder, read_sentence_lines(path, "--fit-on", min_sentences=2), poolings, max_length=spec.max_length, prefix=settings.prefix,
                  batch_size=settings.batch_size, cache=cache, show_progress=settings.show_progress)


def slugify(text: str) -> str:
    """A file-name-safe form of a model name or label: letters, digits, '-' and '.' only."""
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text).strip("-")


def write_whiten_grid(settings: WhitenSettings, results_path: Path) -> str:
    """Write grid.csv / grid.md / grid.png beside the long-format results and return the markdown.

    The grid holds every cell of the results file for the evaluated split, so runs with and without a
    prefix collected in one folder show side by side (prefix becomes a row key when it varies).
    """
    from stseval.report.grids import write_report

    written = write_report([results_path], settings.out_dir, metrics=["spearman_cosine"], split=settings.split,
                           best=True, name="grid", task_order=[spec.name for spec in settings.tasks])
    return written[1].read_text(encoding="utf-8")
