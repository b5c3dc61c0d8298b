"""The `stseval whiten` grid: encode each task once per model, then score raw and whitened cells.

Cells are (model, pooling, method, dims, fit_on, task, split). The run follows stseval/runs/plan.py: one
unit per model and task, whose cells share one encoding pass; each finished task's rows are written to
the long-format results file at once, so Ctrl-C loses at most the task being scored and a re-run
skips what is already there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stseval.common.errors import StsevalError
from stseval.common.fileio import check_writable_dir
from stseval.data.tasks import TASKS, TaskSpec, data_fingerprint, read_sentence_lines
from stseval.evaluation.scoring import SplitVectors, encode_splits, score_pairs
from stseval.methods.whitening import RELATIVE_EIGENVALUE_FLOOR, Whitening, fit_whitening, save_whitening
from stseval.options import check_dims_within
from stseval.runs.plan import Cell, RunOutput, Unit, fill_score, now, planned_row, run_units, unique_cells
from stseval.runs.results import ResultRow, ResultsFile, provenance
from stseval.runs.specs import EncodeSpec, FitSource, WhitenRun, available_splits

_now = now  # tests stamp cells through this name


def dims_label(dims: int | None) -> str:
    return "full" if dims is None else str(dims)


@dataclass
class _Job:
    """One model's part of a whiten run: what every unit of it shares."""

    run: WhitenRun
    encode: EncodeSpec
    encoder: object
    cache: object
    supported: list[str] = field(default_factory=list)  # the poolings the model can produce


def run_whiten(run: WhitenRun, log: Callable[[str], None] = print) -> RunOutput:
    """Run every (model, task, pooling, method, dims, fit_on) cell not yet in the results file.

    Returns:
        the long-format results CSV and the rows computed now (grids: stseval.report.grids.write_run_grid).
    Raises:
        StsevalError naming the option: --dims above the model's size, a --fit-on too small for --dims,
        an unwritable --out or --save-kernel, rows of other data or weights in --out.
    """
    from stseval.encoders.cache import EmbeddingCache, check_home_writable, default_cache_root
    from stseval.encoders.encoder import load_encoder

    check_writable_dir(run.out_dir, "--out")
    if run.save_kernel_dir is not None:
        check_writable_dir(run.save_kernel_dir, "--save-kernel")
    check_home_writable()
    results = ResultsFile(run.results_path)
    cache = EmbeddingCache(default_cache_root())
    base = provenance(run.seed)
    computed = []
    for encode in run.encoders:
        encoder = load_encoder(encode.model, backend=encode.backend, processes=encode.processes)
        check_dims_within(run.dims, encoder.dimension, encoder.name)
        _check_file_fits_rank(run, encoder.dimension)
        job = _Job(run, encode, encoder, cache, [p for p in encode.poolings if encoder.supports(p)])
        units = [_plan_task(job, spec, base) for spec in run.tasks]
        computed += run_units(results, units, lambda unit, cells, job=job: _score_task(job, unit, cells), log,
                              redo=lambda unit, cell, job=job: _kernel_missing(job, unit, cell),
                              redo_reason="without their --save-kernel file")
    return RunOutput(results.path, computed)


def _methods(run: WhitenRun) -> list[tuple[str, str]]:
    """(method, metric) pairs scored after whitening."""
    methods = [("whitening", "spearman_cosine")]
    if run.unnormalized:
        methods.append(("whitening-unnormalized", "spearman_dot"))
    return methods


def _plan_task(job: _Job, spec: TaskSpec, base: dict) -> Unit:
    """The cells of one task for one model, values NaN; context: (task, the splits to encode)."""
    run, encoder = job.run, job.encoder
    present = available_splits(spec, run.data_dir)
    needed = {run.split}.union(*(fit.own_splits(spec, run.data_dir) for fit in run.fit_on))
    common = dict(
        model=encoder.name, model_fingerprint=encoder.fingerprint, task=spec.name, split=run.split,
        prefix=job.encode.prefix, data_sha256=data_fingerprint(spec, present, run.data_dir),
        max_length=str(spec.max_length), **{k: v for k, v in base.items() if k != "seed"}, seed=run.seed,
    )
    cells = []
    for pooling in job.encode.poolings:
        cells.append(Cell([planned_row(common, pooling=pooling, method="raw", metric="spearman_cosine")]))
        for fit in run.fit_on:
            for dims in run.dims:
                cells += [Cell([planned_row(common, pooling=pooling, method=method, metric=metric,
                                            dims=dims_label(dims), fit_on=fit.label,
                                            fit_splits=fit.fit_splits(spec, run.data_dir))], fit)
                          for method, metric in _methods(run)]
    return Unit(f"{encoder.name} {spec.name}", unique_cells(cells),
                context=(spec, [split for split in present if split in needed]))


def _score_task(job: _Job, unit: Unit, cells: list[Cell]) -> list[ResultRow]:
    """Encode the task's splits once for every pooling, then score each pending cell."""
    spec, split_names = unit.context
    rows = [cell.rows[0] for cell in cells]
    if not job.supported:  # e.g. --pooling pooler alone on a model without one: n/a cells, no encoding
        return [_not_available(row, job.encoder) for row in rows]
    encoded = encode_splits(job.encoder, spec, split_names, job.supported, job.run.data_dir,
                            prefix=job.encode.prefix, batch_size=job.encode.batch_size, cache=job.cache,
                            show_progress=job.encode.show_progress)
    fits = _Fits(job, spec, encoded)
    return [_score_cell(job, cell, encoded[job.run.split], fits) if cell.rows[0].pooling in job.supported
            else _not_available(cell.rows[0], job.encoder) for cell in cells]


def _score_cell(job: _Job, cell: Cell, evaluated: SplitVectors, fits: _Fits) -> ResultRow:
    """One raw or whitened cell's Spearman (and --save-kernel file)."""
    row, run = cell.rows[0], job.run
    started = time.perf_counter()
    vectors_a, vectors_b = evaluated.vectors_a[row.pooling], evaluated.vectors_b[row.pooling]
    if row.method != "raw":
        whitening = fits.get(row.pooling, cell.setting)
        n_fit, rank = whitening.provenance["n_fit_vectors"], whitening.provenance["rank"]
        n_components = whitening.n_components if row.dims == "full" else int(row.dims)
        if n_components > _supported_dims(n_fit, rank, whitening.mu.shape[1]) and not run.allow_low_rank:
            raise StsevalError(_low_rank_message(row.fit_on, n_fit, whitening.mu.shape[1], rank, row.dims,
                                                 n_components))
        row.n_fit, row.fit_rank = n_fit, rank
        if row.dims != "full":
            whitening = whitening.truncate(int(row.dims))
        vectors_a, vectors_b = whitening.apply(vectors_a), whitening.apply(vectors_b)
        if run.save_kernel_dir is not None and row.method == "whitening":
            save_whitening(whitening, kernel_path(run.save_kernel_dir, job.encoder.name, row.task, row))
    score = score_pairs(vectors_a, vectors_b, evaluated.gold_scores, run.n_resamples, run.seed,
                        normalize=row.metric != "spearman_dot")
    fill_score(row, score, started)
    row.created_at = _now()  # when this cell was computed, not when the run started
    return row


class _Fits:
    """The whitenings of one task, each fitted once per (pooling, source) and reused across dims."""

    def __init__(self, job: _Job, spec: TaskSpec, encoded: dict[str, SplitVectors]):
        self.job, self.spec, self.encoded = job, spec, encoded
        self.fitted: dict[tuple[str, FitSource], Whitening] = {}
        self.outside: dict[FitSource, dict[str, np.ndarray]] = {}  # sources outside the task, every pooling

    def get(self, pooling: str, fit: FitSource) -> Whitening:
        if (pooling, fit) not in self.fitted:
            vectors = self._vectors(pooling, fit)
            mu, kernel = fit_whitening(vectors)
            encoder = self.job.encoder
            self.fitted[pooling, fit] = Whitening(mu, kernel, {
                "model": encoder.name, "model_fingerprint": encoder.fingerprint, "pooling": pooling,
                "prefix": self.job.encode.prefix, "task": self.spec.name, "fit_on": fit.label,
                "fit_splits": fit.fit_splits(self.spec, self.job.run.data_dir),
                "n_fit_vectors": int(len(vectors)), "rank": _fit_rank(kernel, len(vectors)),
                "max_length": self.spec.max_length})
        return self.fitted[pooling, fit]

    def _vectors(self, pooling: str, fit: FitSource) -> np.ndarray:
        """(n, d) vectors whose statistics the whitening for `fit` is fitted on."""
        own = fit.own_splits(self.spec, self.job.run.data_dir)
        if own:
            return np.concatenate([self.encoded[split].all_vectors(pooling) for split in own])
        if fit not in self.outside:  # encoded once for every pooling, not once per pooling
            self.outside[fit] = _encode_fit_source(self.job, self.spec, fit)
        return self.outside[fit][pooling]


def _encode_fit_source(job: _Job, spec: TaskSpec, fit: FitSource) -> dict[str, np.ndarray]:
    """pooling -> (n, d) vectors of a source outside the task: pooled tasks, task:NAME or a sentence file."""
    run, encode = job.run, job.encode
    if fit.kind in ("pooled", "task"):
        sources = run.tasks if fit.kind == "pooled" else (TASKS[fit.value],)
        parts: dict[str, list[np.ndarray]] = {pooling: [] for pooling in job.supported}
        for source in sources:
            other = encode_splits(job.encoder, source, available_splits(source, run.data_dir), job.supported,
                                  run.data_dir, prefix=encode.prefix, batch_size=encode.batch_size, cache=job.cache,
                                  show_progress=encode.show_progress)
            for pooling in job.supported:
                parts[pooling].extend(split_vectors.all_vectors(pooling) for split_vectors in other.values())
        return {pooling: np.concatenate(vectors) for pooling, vectors in parts.items()}
    from stseval.encoders.encoder import encode as encode_texts

    return encode_texts(job.encoder, read_sentence_lines(fit.path, "--fit-on", min_sentences=2), job.supported,
                        max_length=spec.max_length, prefix=encode.prefix, batch_size=encode.batch_size,
                        cache=job.cache, show_progress=encode.show_progress)


def _not_available(row: ResultRow, encoder) -> ResultRow:
    """Mark a row of a pooling the model cannot produce (pooler without trained pooler weights) n/a."""
    row.status, row.note = "n/a", f"{encoder.name} has no {row.pooling} output"
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


def _check_file_fits_rank(run: WhitenRun, dimension: int) -> None:
    """Refuse a --fit-on file too short for the --dims asked before anything is encoded."""
    if run.allow_low_rank:
        return
    widest = max(dimension if dims is None else dims for dims in run.dims)
    for fit in run.fit_on:
        if fit.kind == "file":
            n_fit = len(read_sentence_lines(fit.path, "--fit-on", min_sentences=2))
            if n_fit - 1 < widest:  # n vectors span at most n - 1 directions around their mean
                label = "full" if widest == dimension else str(widest)
                raise StsevalError(_low_rank_message(fit.label, n_fit, dimension, n_fit - 1, label, widest))


def kernel_path(folder: Path, model: str, task: str, row: ResultRow) -> Path:
    """Where --save-kernel puts the whitening of one cell: <model>_<pooling>_<task>_fit-<fit_on>_<dims>.npz."""
    return Path(folder) / f"{slugify(model)}_{row.pooling}_{task}_fit-{slugify(row.fit_on)}_{row.dims}.npz"


def _kernel_missing(job: _Job, unit: Unit, cell: Cell) -> bool:
    """Whether --save-kernel asks for this finished cell's kernel file and it is not there: redo the cell."""
    row, folder = cell.rows[0], job.run.save_kernel_dir
    return (folder is not None and row.method == "whitening" and row.pooling in job.supported
            and not kernel_path(folder, job.encoder.name, row.task, row).is_file())


def slugify(text: str) -> str:
    """A file-name-safe form of a model name or label: letters, digits, '-' and '.' only."""
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text).strip("-")
