"""The `stseval whiten` grid: encode each task once per model, then score raw and reduced cells.

Cells are (model, pooling, method, dims, fit_on, beta, gamma, task, split). Methods (--methods): `whitening`
is Su's beta/gamma whitening x -> (x - beta * mu) U[:, :k] diag(lambda[:k])^(-gamma/2) (kexue.fm/archives/9079;
beta = gamma = 1, the default, is BERT-whitening), `pca` the same with beta = gamma = 0 (a rotation onto the
principal axes, cut to k), `raw-truncate` the first k coordinates. One eigendecomposition per (pooling, fit
source) serves every beta, gamma and k (`WhiteningBasis`).

With --choose-on valid every cell is also scored on the valid split; per (model, pooling, task, fit_on,
method) the setting (beta, gamma, dims) with the best valid Spearman is then reported on --split as a row
of method `<method>-chosen`, `chosen_on` valid. The choice reads valid rows only.

The run follows stseval/runs/plan.py: one unit per model and task, whose cells share one encoding pass;
each finished task's rows are written to the long-format results file at once, so Ctrl-C loses at most
the task being scored and a re-run skips what is already there.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stseval.common.errors import StsevalError
from stseval.common.fileio import check_writable_dir
from stseval.common.settings import Pooling, pooling_names
from stseval.data.tasks import TASKS, TaskSpec, data_fingerprint, load_pairs, read_sentence_lines
from stseval.encoders.cache import EmbeddingCache
from stseval.encoders.protocol import SentenceEncoder, can_pool
from stseval.evaluation.scoring import SplitVectors, encode_splits, score_pairs
from stseval.methods.whitening import WhiteningBasis, fit_whitening_basis, load_whitening, save_whitening
from stseval.options import CHOSEN_SUFFIX, check_dims_within, check_layers_within, exponent_label
from stseval.runs.plan import Cell, RunOutput, Unit, fill_score, now, planned_row, run_units, unique_cells
from stseval.runs.results import CELL_KEY, COLUMNS, ResultRow, ResultsFile, cell_key, provenance
from stseval.runs.specs import EncodeSpec, FitSource, WhitenRun, available_splits

_now = now  # tests stamp cells through this name


def dims_label(dims: int | None) -> str:
    return "full" if dims is None else str(dims)


@dataclass
class _Job:
    """One model's part of a whiten run: what every unit of it shares."""

    run: WhitenRun
    encode: EncodeSpec
    encoder: SentenceEncoder
    cache: EmbeddingCache
    supported: list[Pooling] = field(default_factory=list)  # the poolings the model can produce (`can_pool`)

    @property
    def supported_names(self) -> list[str]:
        """str() of each supported pooling: the rows' text, and the keys of the encoded vectors."""
        return pooling_names(self.supported)


def run_whiten(run: WhitenRun, log: Callable[[str], None] = print) -> RunOutput:
    """Run every (model, task, pooling, method, dims, fit_on) cell not yet in the results file.

    Returns:
        the long-format results CSV and the rows computed now (grids: stseval.report.write.write_run_grid).
    Raises:
        StsevalError naming the option: --dims above the model's size, a --fit-on too small for --dims,
        an unwritable --out or --save-kernel, rows of other data or weights in --out.
    """
    from stseval.encoders.cache import EmbeddingCache, check_home_writable, default_cache_root
    from stseval.encoders.precision import threads_pinned

    check_writable_dir(run.out_dir, "--out")
    if run.save_kernel_dir is not None:
        check_writable_dir(run.save_kernel_dir, "--save-kernel")
    check_home_writable()
    results = ResultsFile(run.results_path)
    cache = EmbeddingCache(default_cache_root())
    base = provenance(run.seed)
    computed = []
    for encode in run.encoders:
        with threads_pinned(encode.threads) as threads:
            computed += _run_model(run, encode, results, cache, dict(base, torch_threads=str(threads)), log)
    return RunOutput(results.path, computed)


def _run_model(run: WhitenRun, encode: EncodeSpec, results: ResultsFile, cache: EmbeddingCache, base: dict,
               log: Callable[[str], None]) -> list[ResultRow]:
    """One --model's cells: load it, plan each task, compute what the results file lacks."""
    from stseval.encoders.encoder import load_encoder

    computed: list[ResultRow] = []
    encoder = load_encoder(encode.model, backend=encode.backend, processes=encode.processes,
                           precision=encode.precision)
    check_dims_within(run.dims, encoder.dimension, encoder.name)
    if hasattr(encoder, "n_layers"):  # transformers; sentence-vector encoders give layer-avg n/a cells
        check_layers_within(encode.poolings, encoder.n_layers, encoder.name)
    _check_file_fits_rank(run, encoder.dimension)
    encode = _model_poolings(encode, encoder, log)
    job = _Job(run, encode, encoder, cache, [p for p in encode.poolings if can_pool(encoder, p)])
    units = [_plan_task(job, spec, base) for spec in run.tasks]
    log(encoding_estimate(job, [unit for unit in units if _has_pending(results, unit)]))
    computed += run_units(results, units, functools.partial(_score_task, job), log,
                          redo=functools.partial(_kernel_missing, job),
                          redo_reason="without their --save-kernel file")
    if run.choose_on is not None:
        computed += _add_chosen_rows(results, units, run.choose_on, log)
    return computed


def _has_pending(results: ResultsFile, unit: Unit) -> bool:
    return any(not all(results.has(cell_key(row)) for row in cell.rows) for cell in unit.cells)


def encoding_estimate(job: _Job, units: Sequence[Unit]) -> str:
    """One line said before a run starts: about how many sentences it encodes, and where they come from.

    Counts the distinct sentences of each pending task's splits (scored and fitted on) and of each --fit-on
    source outside the tasks (pooled, task:NAME: every split that task has; a file), each source once, as
    the run encodes them; sentences already in the embedding cache are read back instead.
    """
    run = job.run
    parts: list[str] = []
    total = 0
    for unit in units:
        spec, split_names = unit.context
        count = len({text for split in split_names for pair in load_pairs(spec, split, run.data_dir)
                     for text in (pair.sentence1, pair.sentence2)})
        total += count
        parts.append(f"{spec.name} {'+'.join(split_names)} {count:,}")
    for fit in run.fit_on if units else ():
        if fit.kind in ("pooled", "task"):
            sources = run.tasks if fit.kind == "pooled" else (TASKS[fit.value],)
            for source in sources:
                splits = available_splits(source, run.data_dir)
                count = len({text for split in splits for pair in load_pairs(source, split, run.data_dir)
                             for text in (pair.sentence1, pair.sentence2)})
                total += count
                parts.append(f"--fit-on {fit.label}: {source.name} {'+'.join(splits)} {count:,}")
        elif fit.kind == "file":
            count = len(set(read_sentence_lines(fit.path, "--fit-on")))
            total += count
            parts.append(f"--fit-on {fit.label}: {count:,}")
    if not units:
        return f"{job.encoder.name}: nothing to encode, every cell is done"
    return (f"{job.encoder.name}: about {total:,} sentences to encode ({'; '.join(parts)}); "
            "those already in the embedding cache are read back")


def _model_poolings(encode: EncodeSpec, encoder: SentenceEncoder, log: Callable[[str], None]) -> EncodeSpec:
    """Without --pooling, the default poolings the model has (no `pooler` cells for a model without one)."""
    if not encode.poolings_from_model:
        return encode
    kept = tuple(pooling for pooling in encode.poolings if can_pool(encoder, pooling))
    if not kept:
        raise StsevalError(f"--pooling: {encoder.name} gives none of {', '.join(pooling_names(encode.poolings))}; "
                           "name its pooling")
    log(f"{encoder.name}: --pooling {','.join(pooling_names(kept))} (the default poolings this model has)")
    return dataclasses.replace(encode, poolings=kept)


@dataclass(frozen=True)
class _Reduction:
    """What a cell computes: its method's vectors at k, from one fit source for the fitted methods."""

    method: str  # raw, whitening, whitening-unnormalized, pca or raw-truncate
    fit: FitSource | None = None  # None for raw and raw-truncate
    beta: float = 1.0
    gamma: float = 1.0


def _fitted(run: WhitenRun, fit: FitSource) -> list[tuple[_Reduction, str]]:
    """(what to compute, metric) of the fitted cells of one pooling, source and dims, in grid order."""
    planned = []
    if "whitening" in run.methods:
        for beta in run.betas:
            for gamma in run.gammas:
                planned.append((_Reduction("whitening", fit, beta, gamma), "spearman_cosine"))
                if run.unnormalized:
                    planned.append((_Reduction("whitening-unnormalized", fit, beta, gamma), "spearman_dot"))
    if "pca" in run.methods:
        planned.append((_Reduction("pca", fit, 0.0, 0.0), "spearman_cosine"))
    return planned


def _plan_task(job: _Job, spec: TaskSpec, base: dict) -> Unit:
    """The cells of one task for one model, values NaN; context: (task, the splits to encode)."""
    run, encoder = job.run, job.encoder
    present = available_splits(spec, run.data_dir)
    needed = set(run.scored_splits).union(*(fit.own_splits(spec, run.data_dir) for fit in run.fit_on))
    common = dict(
        model=encoder.name, model_fingerprint=encoder.fingerprint, task=spec.name,
        prefix=job.encode.prefix, data_sha256=data_fingerprint(spec, present, run.data_dir),
        max_length=str(spec.max_length), **{k: v for k, v in base.items() if k != "seed"}, seed=run.seed,
    )
    cells = []
    for split in run.scored_splits:
        for pooling in job.encode.poolings:
            def cell_of(reduction: _Reduction, metric: str, dims: int | None, split: str = split,
                        pooling: Pooling = pooling, **fields) -> Cell:
                return Cell([planned_row(common, split=split, pooling=str(pooling), method=reduction.method,
                                         metric=metric, dims=dims_label(dims), **fields)], reduction)

            cells.append(cell_of(_Reduction("raw"), "spearman_cosine", None))
            for fit in run.fit_on:
                for dims in run.dims:
                    cells += [cell_of(reduction, metric, dims, beta=exponent_label(reduction.beta),
                                      gamma=exponent_label(reduction.gamma), fit_on=fit.label,
                                      fit_splits=fit.fit_splits(spec, run.data_dir))
                              for reduction, metric in _fitted(run, fit)]
            if "raw-truncate" in run.methods:
                cells += [cell_of(_Reduction("raw-truncate"), "spearman_cosine", dims) for dims in run.dims]
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
    return [_score_cell(job, cell, encoded[cell.rows[0].split], fits) if cell.rows[0].pooling in job.supported_names
            else _not_available(cell.rows[0], job.encoder) for cell in cells]


def _score_cell(job: _Job, cell: Cell, evaluated: SplitVectors, fits: _Fits) -> ResultRow:
    """One raw, truncated, PCA or whitened cell's Spearman (and --save-kernel file)."""
    row, run, reduction = cell.rows[0], job.run, cell.setting
    started = time.perf_counter()
    vectors_a, vectors_b = evaluated.vectors_a[row.pooling], evaluated.vectors_b[row.pooling]
    n_components = None if row.dims == "full" else int(row.dims)
    if row.method == "raw-truncate":  # no fit: the first k coordinates (cosine scoring renormalises)
        vectors_a, vectors_b = vectors_a[:, :n_components], vectors_b[:, :n_components]
    elif row.method != "raw":
        basis = fits.get(row.pooling, reduction.fit)
        dimension = basis.axes.shape[0]
        kept = dimension if n_components is None else n_components
        # past the fit's rank, gamma > 0 magnifies directions the fit never saw; a rotation (gamma 0) does not
        if reduction.gamma > 0 and not run.allow_low_rank:
            check_fit_rank(f"--fit-on {row.fit_on}", basis.n_fit, basis.rank, dimension, kept, row.dims)
        row.n_fit, row.fit_rank = basis.n_fit, basis.rank
        facts = fits.provenance(row.pooling, reduction.fit, basis)
        whitening = basis.whitening(reduction.beta, reduction.gamma, n_components,
                                    dict(facts, n_components=n_components) if n_components else facts)
        vectors_a, vectors_b = whitening.apply(vectors_a), whitening.apply(vectors_b)
        if run.save_kernel_dir is not None and row.method == "whitening":
            whitening.provenance["kernel_key"] = kernel_key(row)  # what a resumed run checks before trusting it
            save_whitening(whitening, kernel_path(run.save_kernel_dir, job.encoder.name, row.task, row))
    score = score_pairs(vectors_a, vectors_b, evaluated.gold_scores, run.n_resamples, run.seed,
                        normalize=row.metric != "spearman_dot")
    fill_score(row, score, started)
    row.created_at = _now()  # when this cell was computed, not when the run started
    return row


class _Fits:
    """The fits of one task: one eigendecomposition per (pooling, source), reused by every beta, gamma, dims."""

    def __init__(self, job: _Job, spec: TaskSpec, encoded: dict[str, SplitVectors]):
        self.job, self.spec, self.encoded = job, spec, encoded
        self.fitted: dict[tuple[str, FitSource], WhiteningBasis] = {}
        self.outside: dict[FitSource, dict[str, np.ndarray]] = {}  # sources outside the task, every pooling

    def get(self, pooling: str, fit: FitSource) -> WhiteningBasis:
        if (pooling, fit) not in self.fitted:
            self.fitted[pooling, fit] = fit_whitening_basis(self._vectors(pooling, fit))
        return self.fitted[pooling, fit]

    def provenance(self, pooling: str, fit: FitSource, basis: WhiteningBasis) -> dict:
        """What a saved kernel of this fit records about it."""
        encoder = self.job.encoder
        return {"model": encoder.name, "model_fingerprint": encoder.fingerprint, "pooling": pooling,
                "prefix": self.job.encode.prefix, "task": self.spec.name, "fit_on": fit.label,
                "fit_splits": fit.fit_splits(self.spec, self.job.run.data_dir),
                "n_fit_vectors": basis.n_fit, "rank": basis.rank, "max_length": self.spec.max_length}

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
        parts: dict[str, list[np.ndarray]] = {pooling: [] for pooling in job.supported_names}
        for source in sources:
            other = encode_splits(job.encoder, source, available_splits(source, run.data_dir), job.supported,
                                  run.data_dir, prefix=encode.prefix, batch_size=encode.batch_size, cache=job.cache,
                                  show_progress=encode.show_progress)
            for pooling in job.supported_names:
                parts[pooling].extend(split_vectors.all_vectors(pooling) for split_vectors in other.values())
        return {pooling: np.concatenate(vectors) for pooling, vectors in parts.items()}
    from stseval.encoders.encoder import encode as encode_texts

    return encode_texts(job.encoder, read_sentence_lines(fit.path, "--fit-on", min_sentences=2), job.supported,
                        max_length=spec.max_length, prefix=encode.prefix, batch_size=encode.batch_size,
                        cache=job.cache, show_progress=encode.show_progress)


def _not_available(row: ResultRow, encoder: SentenceEncoder) -> ResultRow:
    """Mark a row of a pooling the model cannot produce (pooler without trained pooler weights) n/a."""
    row.status, row.note = "n/a", f"{encoder.name} has no {row.pooling} output"
    return row


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


def low_rank_message(source: str, n_fit: int, dimension: int, rank: int, dims: str, n_components: int,
                     option: str = "--dims", anyway: str = "score it anyway") -> str:
    """Why k whitened directions cannot all come from this fit, and the ways out."""
    why = " (fewer vectors than dimensions)" if n_fit <= dimension else ""
    return (f"{source}: {n_fit} vectors of {dimension} dims have covariance rank {rank}{why}, "
            f"so {option} {dims} would keep {n_components - rank} direction(s) the fit never saw; give {option} "
            f"{rank} or less, fit on more sentences, or pass --allow-low-rank to {anyway}")


def check_fit_rank(source: str, n_fit: int, rank: int, dimension: int, n_components: int, dims: str,
                   option: str = "--dims", anyway: str = "score it anyway") -> None:
    """Refuse keeping n_components whitened directions of a fit that stands behind fewer.

    The one rank check of every whitening fit (whiten, index build --whiten-dims, index sweep): past the
    fit's rank, gamma > 0 magnifies directions the fit never saw, so every cosine there is noise.

    Args:
        source: what was fitted, said first: "--fit-on test", "STS-B test corpus", ...
        n_fit, rank: the vectors fitted and their covariance rank (n_fit - 1 before anything is encoded).
        dimension: the model's vector size; n_components: the directions asked for, as `option dims`.
    Raises:
        StsevalError naming `option`, the rank, and --allow-low-rank.
    """
    if n_components > _supported_dims(n_fit, rank, dimension):
        raise StsevalError(low_rank_message(source, n_fit, dimension, rank, dims, n_components, option, anyway))


def _check_file_fits_rank(run: WhitenRun, dimension: int) -> None:
    """Refuse a --fit-on file too short for the --dims asked before anything is encoded."""
    if run.allow_low_rank:
        return
    widest = max(dimension if dims is None else dims for dims in run.dims)
    for fit in run.fit_on:
        if fit.kind == "file":
            n_fit = len(read_sentence_lines(fit.path, "--fit-on", min_sentences=2))
            # n vectors span at most n - 1 directions around their mean
            check_fit_rank(f"--fit-on {fit.label}", n_fit, n_fit - 1, dimension, widest,
                           "full" if widest == dimension else str(widest))


_KERNEL_KEY = tuple(name for name in CELL_KEY if name not in ("split", "metric"))
"""A kernel's identity: its cell's key but the split scored and the metric, which one fit serves alike."""


def kernel_key(row: ResultRow) -> dict[str, str]:
    """The settings a --save-kernel file was fitted under (model, fingerprint, pooling, prefix, fit_on, dims,
    beta, gamma, data, ...): recorded in the file and hashed into its name."""
    return {name: str(getattr(row, name)) for name in _KERNEL_KEY}


def kernel_path(folder: Path, model: str, task: str, row: ResultRow) -> Path:
    """Where --save-kernel puts the whitening of one cell: <model>_<pooling>_<task>_fit-<fit_on>_<dims>, with
    _beta<b>_gamma<g> unless beta = gamma = 1 (plain BERT-whitening), then _<hash of kernel_key(row)>.npz.

    The readable part leaves settings out (the prefix, the data, the seed, ...); the hash carries all of
    them, so kernels of two cells never share a file.
    """
    exponents = "" if (row.beta, row.gamma) in (("1", "1"), ("", "")) else f"_beta{row.beta}_gamma{row.gamma}"
    digest = hashlib.sha256(json.dumps(kernel_key(row), sort_keys=True).encode("utf-8")).hexdigest()[:12]
    return Path(folder) / (f"{slugify(model)}_{slugify(row.pooling)}_{task}_fit-{slugify(row.fit_on)}_{row.dims}"
                           f"{exponents}_{digest}.npz")


def _kernel_missing(job: _Job, unit: Unit, cell: Cell) -> bool:
    """Whether --save-kernel asks for this finished cell's kernel and no file of this cell's key is there
    (absent, unreadable, or recording another key): redo the cell, which rewrites the file."""
    row, folder = cell.rows[0], job.run.save_kernel_dir
    if folder is None or row.method != "whitening" or row.pooling not in job.supported_names:
        return False
    path = kernel_path(folder, job.encoder.name, row.task, row)
    if not path.is_file():
        return True
    try:
        return load_whitening(path).provenance.get("kernel_key") != kernel_key(row)
    except StsevalError:  # damaged: computed again and replaced
        return True


def slugify(text: str) -> str:
    """A file-name-safe form of a model name or label: letters, digits, '-' and '.' only."""
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in text).strip("-")


# ---------------------------------------------------------------------------------------------
# --choose-on: pick each family's setting on one split, report it on another

CHOSEN_FAMILIES = ("whitening", "pca", "raw-truncate")
"""Methods whose (beta, gamma, dims) --choose-on picks; scored by cosine (spearman_cosine)."""
_GROUP = ("model", "model_fingerprint", "pooling", "task", "fit_on", "prefix", "data_sha256", "seed", "method")
"""What one choice is made within: everything but the setting (beta, gamma, dims) and the split."""
_SETTING = ("beta", "gamma", "dims")


def choose_settings(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, ...], tuple[Mapping[str, Any], int]]:
    """The best-scoring setting of each group of rows of one split: what --choose-on picks.

    Args:
        rows: rows of the choosing split only (e.g. valid), as mappings with the `_GROUP` and `_SETTING`
            fields, `value` (Spearman) and `status`; n/a rows are ignored. Nothing of any other split is read.
    Returns:
        {group: (the row with the highest value, the number of settings it was chosen from)}; ties go to the
        first row given, so the choice is deterministic.
    """
    best: dict[tuple[str, ...], tuple[Mapping[str, Any], int]] = {}
    for row in rows:
        if row["status"] == "n/a" or not np.isfinite(float(row["value"])):
            continue
        group = tuple(str(row[name]) for name in _GROUP)
        chosen, count = best.get(group, (None, 0))
        if chosen is None or float(row["value"]) > float(chosen["value"]):
            chosen = row
        best[group] = (chosen, count + 1)
    return best


def _add_chosen_rows(results: ResultsFile, units: Sequence[Unit], choose_on: str,
                     log: Callable[[str], None]) -> list[ResultRow]:
    """Add a `<method>-chosen` row on --split for every group of the planned --choose-on cells.

    The choice reads the planned cells' rows of the choose_on split (from the results file, so resumed
    cells count); the chosen row is the same setting's row on --split, renamed, with chosen_on and the
    choosing score. An earlier chosen row of the group whose setting differs is replaced.
    """
    on_file = {cell_key(record): record.to_dict() for _, record in results.frame.iterrows()}
    candidates: list[dict[Any, Any]] = []
    reported: dict[tuple[str, ...], dict[Any, Any]] = {}
    for unit in units:
        for cell in unit.cells:
            row = cell.rows[0]
            if row.method not in CHOSEN_FAMILIES or row.metric != "spearman_cosine" or row.status == "n/a":
                continue
            record = on_file.get(cell_key(row))
            if record is None:
                continue
            if row.split == choose_on:
                candidates.append(record)
            else:
                reported[_group_key(record) + tuple(str(record[name]) for name in _SETTING)] = record
    chosen_rows = []
    for group, (choice, n_settings) in choose_settings(candidates).items():
        source = reported.get(group + tuple(str(choice[name]) for name in _SETTING))
        if source is None:
            continue
        fields = {name: source[name] for name in COLUMNS}
        fields.update(method=str(source["method"]) + CHOSEN_SUFFIX, chosen_on=choose_on,
                      best_valid_spearman=f"{float(choice['value']):.6g}", created_at=_now(),
                      note=f"best {choose_on} spearman_cosine of {n_settings} (beta, gamma, dims) settings")
        chosen_rows.append(ResultRow(**fields))
    if chosen_rows:
        groups = {_group_key(row.__dict__) + (row.split,) for row in chosen_rows}
        keys = {cell_key(row) for row in chosen_rows}
        results.add(chosen_rows, replaces=lambda record: (
            str(record["method"]).endswith(CHOSEN_SUFFIX) and _group_key(record) + (str(record["split"]),) in groups
            and cell_key(record) not in keys))
        log(f"--choose-on {choose_on}: {len(chosen_rows)} chosen row(s) added")
    return chosen_rows


def _group_key(record: Mapping[str, Any] | Any) -> tuple[str, ...]:
    """The group of a row, its method family (without -chosen) included."""
    return tuple(str(record[name]).removesuffix(CHOSEN_SUFFIX) if name == "method" else str(record[name])
                 for name in _GROUP)
