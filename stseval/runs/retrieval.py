"""`stseval index build / search / sweep`: encode a corpus, index it, query it, and sweep dimensions.

The array work (building, searching, metrics, truncation, whitening) lives in `stseval.methods.index`; this
module loads encoders and data, writes index folders and result rows (stseval.report.drawing draws the sweep plot).

The sweep compares ways to shrink 384-d vectors to k dims for retrieval on each task's split:
raw truncation (first k coordinates, renormalised; no PCA), PCA (the corpus's top k principal axes,
a rotation without rescaling) and BERT-whitening fitted on the same corpus with its kernel cut to k
columns (Su et al. 2021, arXiv:2103.15316, "better semantics and
faster retrieval"). Each cell reports recall@1/10/100, MRR@10, nDCG@10, QPS, build time and index
size; the plot marks Su's bound k > 8.33 ln N for the task's corpus size N.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from stseval.common.errors import StsevalError
from stseval.common.fileio import check_writable_dir, file_sha256
from stseval.common.settings import Pooling
from stseval.data.tasks import TaskSpec, data_fingerprint, load_pairs, read_sentence_lines, resolve_data_dir
from stseval.encoders.cache import EmbeddingCache, check_home_writable
from stseval.encoders.precision import precision_label, threads_pinned
from stseval.encoders.protocol import SentenceEncoder
from stseval.evaluation.index_eval import evaluate_retrieval
from stseval.evaluation.retrieval import RetrievalSet, positive_min_score, retrieval_set
from stseval.methods.index import (
    DEFAULT_FACTORY,
    IndexMetadata,
    build_index,
    check_query_settings,
    load_index,
    save_index,
    search,
    set_search_params,
    truncate_dims,
    whiten_dims,
    whitening_digest,
)
from stseval.methods.whitening import Whitening, fit_whitening_basis, load_whitening
from stseval.options import check_dims_within

if TYPE_CHECKING:  # annotations only: runs.plan and runs.results import pandas, which `index search` never needs
    from stseval.runs.plan import Cell, RunOutput, Unit
    from stseval.runs.results import ResultRow
    from stseval.runs.specs import SweepRun

DEFAULT_POOLING = Pooling("last-avg")  # mean pooling, what E5 models were trained with
DEFAULT_MAX_LENGTH = 64
SWEEP_DIMS: tuple[int | None, ...] = (None, 256, 128, 64, 32)  # None = the model's full size
SWEEP_METRICS = ("recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10", "qps", "build_s", "index_bytes")
SWEEP_CSV = "retrieval.csv"
SWEEP_PNG = "retrieval.png"  # drawn by stseval.report.drawing.write_sweep_plot
FITTED_METHODS = {"whitening": (1.0, 1.0), "pca": (0.0, 0.0)}
"""The sweep's methods fitted on the corpus, with their (beta, gamma): pca rotates onto the top k axes only."""


@dataclass(frozen=True)
class Neighbour:
    """One search result: corpus row, cosine score (in the index's space) and sentence."""

    rank: int
    row: int
    score: float
    sentence: str


# ---------------------------------------------------------------------------------------------
# corpora and encoding


def task_retrieval_set(spec: TaskSpec, split: str, data_dir: Path, limit: int | None = None) -> RetrievalSet:
    """The retrieval task of one split: positives of its pairs (first `limit` pairs only, if given)."""
    pairs = load_pairs(spec, split, data_dir)
    return retrieval_set(pairs[:limit], positive_min_score(spec.label_kind))


def read_sentences_file(path: Path) -> list[str]:
    """Unique non-empty lines of a UTF-8 file, in order: a corpus to index."""
    return list(dict.fromkeys(read_sentence_lines(path, "--sentences")))


def encode_texts(encoder: SentenceEncoder, texts: Sequence[str], pooling: Pooling, max_length: int, *,
                 prefix: str = "",
                 batch_size: int = 64, cache: EmbeddingCache | None = None,
                 show_progress: bool = True, query: bool = False) -> np.ndarray:
    """(n, d) float32 vectors of texts under one pooling (see encoders.encode; query: its query path)."""
    from stseval.encoders.encoder import encode  # torch stays out of array-only users of this module

    return encode(encoder, list(texts), [pooling], max_length=max_length, prefix=prefix,  # keyed by str(pooling)
                  batch_size=batch_size, cache=cache, show_progress=show_progress, query=query)[str(pooling)]


def _open_cache(use_cache: bool) -> EmbeddingCache | None:
    """The default on-disk embedding cache, or None."""
    if not use_cache:
        return None
    return EmbeddingCache()


# ---------------------------------------------------------------------------------------------
# index build / search


def build(
    model: str,
    index_dir: Path,
    *,
    task: TaskSpec | None = None,
    split: str = "test",
    sentences_file: Path | None = None,
    data_dir: Path | None = None,
    pooling: Pooling | str = DEFAULT_POOLING,
    prefix: str = "",
    max_length: int | None = None,
    whitening_file: Path | None = None,
    fit_whitening_dims: int | None = None,
    factory: str = DEFAULT_FACTORY,
    search_params: str = "",
    batch_size: int = 64,
    use_cache: bool = True,
    seed: int = 0,
    show_progress: bool = True,
    allow_low_rank: bool = False,
    precision: str = "fp32",
    threads: int | None = None,
) -> IndexMetadata:
    """Encode a corpus, optionally whiten it, index it and save the index folder.

    The corpus is every unique sentence of one task split (`task`, `split`, `data_dir`) or the
    lines of `sentences_file`. Whitening comes from a saved file (`whitening_file`, e.g. from
    `stseval whiten --save-kernel`) or is fitted on the corpus itself keeping `fit_whitening_dims`
    directions; it is stored in the index folder, and queries go through it too.

    Args:
        model: --model value for encoders.load_encoder.
        index_dir: folder to write (index.faiss, sentences.jsonl, whitening.npz, meta.json).
        data_dir: the data folder (tasks.resolve_data_dir finds it when None).
        pooling, prefix: how sentences become vectors (a Pooling, or --pooling's one name); queries must use
            the same.
        max_length: tokens; default the task's (64, PAWSX 128), or 64 for a sentences file.
        factory, search_params: see index.build_index.
        allow_low_rank: keep fit_whitening_dims above the rank of the corpus's covariance (whiten's
            --allow-low-rank) instead of refusing them.
        precision: "fp32" or "bf16" (the forward under autocast); recorded in the model name, so search
            encodes queries the same way.
        threads: torch threads while encoding; None keeps torch's default.
    Returns:
        the metadata written to index_dir/meta.json.
    Raises:
        StsevalError naming the option: an unwritable --index-dir, --whiten-dims above the corpus's rank.
    """
    from stseval.encoders.encoder import load_encoder
    from stseval.runs.specs import check_index_sources, parse_one_pooling
    from stseval.runs.whiten import check_fit_rank

    pooling = parse_one_pooling(pooling) if isinstance(pooling, str) else pooling
    check_index_sources(task, sentences_file, whitening_file, fit_whitening_dims)
    check_writable_dir(index_dir, "--index-dir")
    if use_cache:
        check_home_writable()
    if task is not None:
        data_dir = resolve_data_dir(data_dir)
        sentences = task_retrieval_set(task, split, data_dir).corpus
        corpus, data_sha256 = f"{task.name}/{split}", data_fingerprint(task, [split], data_dir)
        max_length = max_length or task.max_length
    else:
        assert sentences_file is not None  # check_index_sources wants --task or --sentences
        sentences = read_sentences_file(sentences_file)
        corpus, data_sha256 = str(sentences_file), file_sha256(Path(sentences_file))[:12]
        max_length = max_length or DEFAULT_MAX_LENGTH

    encoder = load_encoder(model, precision=precision)
    if fit_whitening_dims is not None and not allow_low_rank:  # before encoding: n sentences span n - 1 directions
        check_dims_within([fit_whitening_dims], encoder.dimension, encoder.name, "--whiten-dims")
        check_fit_rank(f"{corpus} corpus", len(sentences), len(sentences) - 1, encoder.dimension,
                       fit_whitening_dims, str(fit_whitening_dims), "--whiten-dims", "build it anyway")
    with threads_pinned(threads):
        vectors = encode_texts(encoder, sentences, pooling, max_length, prefix=prefix, batch_size=batch_size,
                               cache=_open_cache(use_cache), show_progress=show_progress)
    whitening, source = _corpus_whitening(encoder, vectors, whitening_file, fit_whitening_dims,
                                          dict(pooling=str(pooling), prefix=prefix, fit_on=corpus,
                                               max_length=max_length),
                                          allow_low_rank)
    whitening_meta = None
    if whitening is not None:
        vectors = whitening.apply(vectors)
        whitening_meta = {"digest": whitening_digest(whitening), "n_components": whitening.n_components,
                          "source": source, "provenance": whitening.provenance}
    index = build_index(vectors, factory, search_params, seed=seed)
    # a local folder is recorded absolute, so `index search` finds it from any working directory
    model_ref = precision_label(str(Path(model).resolve()), getattr(encoder, "precision", "fp32")) \
        if Path(model).is_dir() else encoder.name
    metadata = IndexMetadata(
        model=model_ref, model_fingerprint=encoder.fingerprint, pooling=str(pooling), prefix=prefix,
        max_length=max_length, dims=int(vectors.shape[1]), n_vectors=len(sentences), factory=factory,
        search_params=search_params, corpus=corpus, data_sha256=data_sha256, whitening=whitening_meta)
    return save_index(index_dir, index, sentences, metadata, whitening)


def _corpus_whitening(encoder, vectors: np.ndarray, whitening_file: Path | None, n_dims: int | None,
                      facts: dict, allow_low_rank: bool = False) -> tuple[Whitening | None, str]:
    """The whitening of an index build and where it came from: a saved file, a fit of n_dims on the
    (n, d) corpus vectors (refused past the fit's rank unless allow_low_rank), or none."""
    from stseval.runs.whiten import check_fit_rank

    if whitening_file is not None:
        whitening = load_whitening(whitening_file)
        if whitening.mu.shape[1] != vectors.shape[1]:
            raise StsevalError(f"--whitening {whitening_file}: fitted on {whitening.mu.shape[1]}-d vectors but "
                               f"{encoder.name} gives {vectors.shape[1]}-d ones")
        return whitening, str(whitening_file)
    if n_dims is None:
        return None, ""
    check_dims_within([n_dims], vectors.shape[1], encoder.name, "--whiten-dims")
    basis = fit_whitening_basis(vectors)
    if not allow_low_rank:
        check_fit_rank(f"{facts['fit_on']} corpus", basis.n_fit, basis.rank, vectors.shape[1], n_dims, str(n_dims),
                       "--whiten-dims", "build it anyway")
    whitening = basis.whitening(1.0, 1.0, n_dims)
    return Whitening(whitening.mu, whitening.kernel, {
        "model": encoder.name, "model_fingerprint": encoder.fingerprint, **facts, "n_fit_vectors": len(vectors),
        "rank": basis.rank}), f"fit on {facts['fit_on']}"


def search_index(
    index_dir: Path,
    queries: Sequence[str],
    top_k: int = 10,
    *,
    model: str | None = None,
    pooling: Pooling | str | None = None,
    prefix: str | None = None,
    whitening_file: Path | None = None,
    search_params: str = "",
    batch_size: int = 64,
    precision: str | None = None,
    threads: int | None = None,
) -> list[list[Neighbour]]:
    """Search an index folder with sentences, encoded the way its corpus was.

    By default the query encoder, pooling, prefix and whitening are the ones recorded in meta.json.
    Any of them may be given explicitly (e.g. a local copy of the model); each must then match the
    index, or the search is refused.

    Args:
        index_dir: written by `build`.
        queries: sentences to look up.
        top_k: neighbours per query.
        search_params: overrides the index's saved ones, e.g. "nprobe=32".
        precision: None: the index's (its model name says +bf16); another is refused by fingerprint.
        threads: torch threads while encoding the queries; None keeps torch's default.
    Returns:
        per query, up to top_k Neighbours, best first.
    Raises:
        StsevalError when the folder is not a valid index or the query settings differ from it.

    Example:
        >>> search_index(Path("runs/atec-index"), ["花呗怎么还款"], top_k=3)[0][0].sentence
    """
    from stseval.encoders.encoder import load_encoder

    if not queries:
        raise StsevalError("give at least one query sentence")
    if top_k < 1:
        raise StsevalError(f"--top-k {top_k}: must be at least 1")
    loaded = load_index(index_dir)
    meta = loaded.metadata
    encoder = load_encoder(model or meta.model, precision=precision)
    query_whitening = load_whitening(whitening_file) if whitening_file is not None else loaded.whitening
    from stseval.runs.specs import parse_one_pooling

    # the index's own pooling, read back from meta.json (written by str()), or --pooling parsed here, at the edge
    pooling = Pooling.parse(meta.pooling) if pooling is None else (
        parse_one_pooling(pooling) if isinstance(pooling, str) else pooling)
    prefix = meta.prefix if prefix is None else prefix
    check_query_settings(loaded, encoder.fingerprint, pooling, prefix, query_whitening)
    with threads_pinned(threads):
        vectors = encode_texts(encoder, queries, pooling, meta.max_length, prefix=prefix, batch_size=batch_size,
                               show_progress=False, query=True)
    if query_whitening is not None:
        vectors = query_whitening.apply(vectors)
    set_search_params(loaded.index, search_params)
    scores, ids = search(loaded.index, vectors, min(top_k, loaded.index.ntotal))
    return [
        [Neighbour(rank, int(row), float(score), loaded.sentences[row])
         for rank, (row, score) in enumerate(zip(id_row, score_row, strict=True), start=1) if row >= 0]
        for id_row, score_row in zip(ids, scores, strict=True)
    ]


def format_neighbours(queries: Sequence[str], results: list[list[Neighbour]]) -> str:
    """Plain-text listing for the CLI: each query after '>> ', then 'rank  score  sentence' lines.

    Not 'query: ', which reads like the E5 prefix (--prefix "query: ") and is not what was searched for.
    """
    lines = []
    for query, neighbours in zip(queries, results, strict=True):
        lines.append(f">> {query}")
        lines.extend(f"{n.rank:4d}  {n.score:.4f}  {n.sentence}" for n in neighbours)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# dimension sweep


@contextlib.contextmanager
def faiss_threads(threads: int | None) -> Iterator[None]:
    """Run the block with FAISS on `threads` OpenMP threads (None: leave as is), then restore the count."""
    if threads is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


@dataclass
class _Job:
    """What every task of a sweep shares."""

    run: SweepRun
    encoder: SentenceEncoder
    cache: EmbeddingCache | None
    base: dict  # provenance fields of every row
    log: Callable[[str], None]


def sweep(run: SweepRun, log: Callable[[str], None] = print) -> RunOutput:
    """Retrieval quality and speed against vector size, raw truncation vs whitening, per task.

    For each task: encode every unique sentence of the split once, fit whitening on those vectors,
    then for each (method, k) build a `factory` index over the k-dim vectors and search it with
    the positive pairs' sentence1 (index.retrieval_set). Rows go to out_dir/retrieval.csv in long
    format as each task finishes (a re-run skips finished cells); stseval.report.drawing.write_sweep_plot
    draws recall@10 and QPS against k with Su's 8.33 ln N line.

    Args:
        run: from specs.parse_sweep_run; threads pins FAISS's threads for the sweep only.
        log: one line per task and per computed cell.
    Returns:
        the results CSV, the rows computed now (finished cells that were skipped are not repeated) and
        the cell keys of every planned row, for the plot.
    """
    from stseval.encoders.encoder import load_encoder
    from stseval.runs.plan import RunOutput, run_units
    from stseval.runs.results import ResultsFile, cell_key, provenance

    check_writable_dir(run.out_dir, "--out")
    if run.encode.use_cache:
        check_home_writable()
    results = ResultsFile(run.results_path)  # a damaged file is refused before the model loads, as whiten does
    encoder = load_encoder(run.encode.model, precision=run.encode.precision)
    check_dims_within(run.dims, encoder.dimension, encoder.name)
    base = {key: value for key, value in provenance(run.seed).items() if key != "seed"}
    with faiss_threads(run.threads), threads_pinned(run.threads) as threads:
        job = _Job(run, encoder, _open_cache(run.encode.use_cache), dict(base, torch_threads=str(threads)), log)
        units = [unit for unit in (_plan_task(job, spec, log) for spec in run.tasks) if unit is not None]
        for unit in units:  # every task's corpus before anything is computed, as whiten checks its --fit-on file
            _check_corpus_fits_rank(job, unit)
        # run_units refuses rows of other data or weights in --out before computing anything
        computed = run_units(results, units, lambda unit, cells: _score_task(job, unit, cells), log)
    planned = frozenset(cell_key(row) for unit in units for cell in unit.cells for row in cell.rows)
    return RunOutput(run.results_path, computed, planned=planned)


def _plan_task(job: _Job, spec: TaskSpec, log: Callable[[str], None]) -> Unit | None:
    """One task's (method, k) cells, each the SWEEP_METRICS rows of one index; None without queries."""
    from stseval.runs.plan import Cell, Unit, planned_row

    run = job.run
    retrieval = task_retrieval_set(spec, run.split, run.data_dir, run.limit)
    if retrieval.n_queries == 0:
        log(f"{spec.name} {run.split}: no positive pairs, skipping")
        return None
    data_sha256 = data_fingerprint(spec, [run.split], run.data_dir) + (f":first{run.limit}" if run.limit else "")
    common = dict(model=job.encoder.name, model_fingerprint=job.encoder.fingerprint, pooling=str(run.pooling),
                  prefix=run.encode.prefix, task=spec.name, split=run.split, data_sha256=data_sha256, seed=run.seed,
                  n_pairs=retrieval.n_queries, max_length=str(spec.max_length), index=run.factory,
                  search_params=run.search_params, top_k=str(run.top_k), n_corpus=str(len(retrieval.corpus)),
                  positive_min_score=f"{positive_min_score(spec.label_kind):g}", **job.base)
    cells = [Cell([planned_row(common, method=method_label(method, run.factory, run.search_params),
                               dims="full" if k is None else str(k), metric=metric,
                               fit_on=f"{run.split}-corpus" if method in FITTED_METHODS else "")
                   for metric in SWEEP_METRICS], (method, k)) for method in run.methods for k in run.dims]
    return Unit(spec.name, cells, context=(spec, retrieval),
                detail=f"{run.split}: {len(retrieval.corpus)} sentences, {retrieval.n_queries} queries, ")


def _rank_source(run: SweepRun, spec: TaskSpec) -> str:
    """How a rank refusal names a sweep's fit: the task's corpus (and --limit, which shrinks it)."""
    return f"{spec.name} {run.split} corpus" + (f" (--limit {run.limit})" if run.limit else "")


def _check_corpus_fits_rank(job: _Job, unit: Unit) -> None:
    """Refuse whitening k above what the task's N corpus sentences can span (N - 1), before encoding."""
    from stseval.runs.whiten import check_fit_rank

    run, (spec, retrieval) = job.run, unit.context
    whitened = [job.encoder.dimension if k is None else k for method, k in (cell.setting for cell in unit.cells)
                if method == "whitening"]  # pca (gamma 0) only rotates: no direction is magnified
    if whitened and not run.allow_low_rank:
        n_fit, widest = len(retrieval.corpus), max(whitened)
        check_fit_rank(_rank_source(run, spec), n_fit, n_fit - 1, job.encoder.dimension, widest,
                       "full" if widest == job.encoder.dimension else str(widest))


def _score_task(job: _Job, unit: Unit, cells: list[Cell]) -> list[ResultRow]:
    """Encode the task's corpus once, fit whitening once, then build and search one index per cell."""
    from stseval.runs.whiten import check_fit_rank

    run, (spec, retrieval) = job.run, unit.context
    vectors = encode_texts(job.encoder, retrieval.corpus, run.pooling, spec.max_length, prefix=run.encode.prefix,
                           batch_size=run.encode.batch_size, cache=job.cache, show_progress=run.encode.show_progress)
    fitted, basis = {}, None  # one eigendecomposition of the corpus serves whitening and pca at every k
    if any(cell.setting[0] in FITTED_METHODS for cell in cells):
        basis = fit_whitening_basis(vectors)
        fitted = {method: basis.whitening(*FITTED_METHODS[method]) for method in FITTED_METHODS}
    rows = []
    for cell in cells:
        method, k = cell.setting
        if basis is not None and method in FITTED_METHODS:
            if method == "whitening" and not run.allow_low_rank:
                check_fit_rank(_rank_source(run, spec), basis.n_fit, basis.rank, vectors.shape[1],
                               vectors.shape[1] if k is None else k, "full" if k is None else str(k))
            for row in cell.rows:
                row.n_fit, row.fit_rank = basis.n_fit, basis.rank
        started = time.perf_counter()
        reduced = truncate_dims(vectors, k) if method == "raw-truncate" else whiten_dims(vectors, fitted[method], k)
        measured = evaluate_retrieval(reduced, retrieval, run.factory, run.search_params, top_k=run.top_k,
                                      seed=run.seed)
        seconds = round(time.perf_counter() - started, 3)
        for row in cell.rows:
            row.value, row.seconds = float(measured[row.metric]), seconds
            row.n_dims, row.threads = str(reduced.shape[1]), str(faiss.omp_get_max_threads())
        rows += cell.rows
        job.log(f"{spec.name} {method:12s} k={reduced.shape[1]:4d} recall@10={measured['recall@10']:.3f} "
                f"mrr@10={measured['mrr@10']:.3f} qps={measured['qps']:.0f}")
    return rows


def method_label(method: str, factory: str, search_params: str) -> str:
    """The `method` column: the reduction, plus the index when it is not exact Flat search."""
    if factory == DEFAULT_FACTORY and not search_params:
        return method
    return f"{method}[{factory}{';' + search_params if search_params else ''}]"
