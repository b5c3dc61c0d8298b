"""`stseval index build / search / sweep`: encode a corpus, index it, query it, and sweep dimensions.

The array work (building, searching, metrics, truncation, whitening) lives in `stseval.methods.index`; this
module loads encoders and data, writes index folders, result rows and the sweep plot.

The sweep compares two ways to shrink 384-d vectors to k dims for retrieval on each task's split:
raw truncation (first k coordinates, renormalised; no PCA) and BERT-whitening fitted on the same
corpus with its kernel cut to k columns (Su et al. 2021, arXiv:2103.15316, "better semantics and
faster retrieval"). Each cell reports recall@1/10/100, MRR@10, nDCG@10, QPS, build time and index
size, and the plot marks Su's bound k > 8.33 ln N for the task's corpus size N.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from stseval.encoders.cache import check_home_writable
from stseval.common.errors import StsevalError
from stseval.common.fileio import atomic_path, check_writable_dir
from stseval.methods.index import (
    DEFAULT_FACTORY, REDUCTION_METHODS, IndexMetadata, RetrievalSet, build_index, check_query_settings,
    evaluate_retrieval, load_index, positive_min_score, retrieval_set, save_index, search, set_search_params,
    su_min_dims, truncate_dims, whiten_dims, whitening_digest,
)
from stseval.runs.results import ResultRow, ResultsFile, cell_key, provenance
from stseval.data.tasks import TASKS, TaskSpec, data_fingerprint, load_pairs, read_sentence_lines, resolve_data_dir
from stseval.methods.whitening import Whitening, fit_whitening, load_whitening

DEFAULT_POOLING = "last-avg"  # mean pooling, what E5 models were trained with
DEFAULT_MAX_LENGTH = 64
SWEEP_DIMS: tuple[int | None, ...] = (None, 256, 128, 64, 32)  # None = the model's full size
SWEEP_METRICS = ("recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10", "qps", "build_s", "index_bytes")
SWEEP_CSV = "retrieval.csv"
SWEEP_PNG = "retrieval.png"


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


def encode_texts(encoder, texts: Sequence[str], pooling: str, max_length: int, prefix: str = "",
                 batch_size: int = 64, cache=None, show_progress: bool = True) -> np.ndarray:
    """(n, d) float32 vectors of texts under one pooling (see encoders.encode)."""
    from stseval.encoders.encoder import encode  # torch stays out of array-only users of this module

    return encode(encoder, list(texts), [pooling], max_length=max_length, prefix=prefix,
                  batch_size=batch_size, cache=cache, show_progress=show_progress)[pooling]


def _open_cache(use_cache: bool):
    """The default on-disk embedding cache, or None."""
    if not use_cache:
        return None
    from stseval.encoders.cache import EmbeddingCache

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
    pooling: str = DEFAULT_POOLING,
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
        pooling, prefix: how sentences become vectors; queries must use the same.
        max_length: tokens; default the task's (64, PAWSX 128), or 64 for a sentences file.
        factory, search_params: see index.build_index.
    Returns:
        the metadata written to index_dir/meta.json.
    """
    from stseval.encoders.encoder import load_encoder

    if (task is None) == (sentences_file is None):
        raise StsevalError("give exactly one of --task (index a split's sentences) or --sentences FILE")
    check_writable_dir(index_dir, "--index-dir")
    if use_cache:
        check_home_writable()
    if whitening_file is not None and fit_whitening_dims is not None:
        raise StsevalError("give either --whitening FILE or --whiten-dims K, not both")
    if task is not None:
        data_dir = resolve_data_dir(data_dir)
        sentences = task_retrieval_set(task, split, data_dir).corpus
        corpus, data_sha256 = f"{task.name}/{split}", data_fingerprint(task, [split], data_dir)
        max_length = max_length or task.max_length
    else:
        sentences = read_sentences_file(sentences_file)
        corpus, data_sha256 = str(sentences_file), hashlib.sha256(Path(sentences_file).read_bytes()).hexdigest()[:12]
        max_length = max_length or DEFAULT_MAX_LENGTH

    encoder = load_encoder(model)
    vectors = encode_texts(encoder, sentences, pooling, max_length, prefix, batch_size,
                           _open_cache(use_cache), show_progress)
    whitening, whitening_meta = None, None
    if whitening_file is not None:
        whitening = load_whitening(whitening_file)
        if whitening.mu.shape[1] != vectors.shape[1]:
            raise StsevalError(f"--whitening {whitening_file}: fitted on {whitening.mu.shape[1]}-d vectors but "
                               f"{model} gives {vectors.shape[1]}-d ones")
        source = str(whitening_file)
    elif fit_whitening_dims is not None:
        if not 1 <= fit_whitening_dims <= vectors.shape[1]:
            raise StsevalError(f"--whiten-dims: {fit_whitening_dims} is outside 1..{vectors.shape[1]} (the vector size)")
        mu, kernel = fit_whitening(vectors, fit_whitening_dims)
        source = f"fit on {corpus}"
        whitening = Whitening(mu, kernel, {"model": encoder.name, "model_fingerprint": encoder.fingerprint,
                                           "pooling": pooling, "prefix": prefix, "fit_on": corpus,
                                           "n_fit_vectors": len(vectors), "max_length": max_length})
    if whitening is not None:
        vectors = whitening.apply(vectors)
        whitening_meta = {"digest": whitening_digest(whitening), "n_components": whitening.n_components,
                          "source": source, "provenance": whitening.provenance}
    index = build_index(vectors, factory, search_params, seed=seed)
    # a local folder is recorded absolute, so `index search` finds it from any working directory
    model_ref = str(Path(model).resolve()) if Path(model).is_dir() else encoder.name
    metadata = IndexMetadata(
        model=model_ref, model_fingerprint=encoder.fingerprint, pooling=pooling, prefix=prefix,
        max_length=max_length, dims=int(vectors.shape[1]), n_vectors=len(sentences), factory=factory,
        search_params=search_params, corpus=corpus, data_sha256=data_sha256, whitening=whitening_meta)
    return save_index(index_dir, index, sentences, metadata, whitening)


def search_index(
    index_dir: Path,
    queries: Sequence[str],
    top_k: int = 10,
    *,
    model: str | None = None,
    pooling: str | None = None,
    prefix: str | None = None,
    whitening_file: Path | None = None,
    search_params: str = "",
    batch_size: int = 64,
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
    encoder = load_encoder(model or meta.model)
    query_whitening = load_whitening(whitening_file) if whitening_file is not None else loaded.whitening
    pooling = meta.pooling if pooling is None else pooling
    prefix = meta.prefix if prefix is None else prefix
    check_query_settings(loaded, encoder.fingerprint, pooling, prefix, query_whitening)
    vectors = encode_texts(encoder, queries, pooling, meta.max_length, prefix, batch_size, show_progress=False)
    if query_whitening is not None:
        vectors = query_whitening.apply(vectors)
    set_search_params(loaded.index, search_params)
    scores, ids = search(loaded.index, vectors, min(top_k, loaded.index.ntotal))
    return [
        [Neighbour(rank, int(row), float(score), loaded.sentences[row])
         for rank, (row, score) in enumerate(zip(id_row, score_row), start=1) if row >= 0]
        for id_row, score_row in zip(ids, scores)
    ]


def format_neighbours(queries: Sequence[str], results: list[list[Neighbour]]) -> str:
    """Plain-text listing for the CLI: each query, then 'rank  score  sentence' lines."""
    lines = []
    for query, neighbours in zip(queries, results):
        lines.append(f"query: {query}")
        lines.extend(f"{n.rank:4d}  {n.score:.4f}  {n.sentence}" for n in neighbours)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# dimension sweep


def sweep(
    model: str,
    tasks: Sequence[TaskSpec],
    out_dir: Path,
    *,
    data_dir: Path | None = None,
    split: str = "test",
    pooling: str = DEFAULT_POOLING,
    prefix: str = "",
    dims: Sequence[int | None] = SWEEP_DIMS,
    methods: Sequence[str] = REDUCTION_METHODS,
    factory: str = DEFAULT_FACTORY,
    search_params: str = "",
    top_k: int = 100,
    limit: int | None = None,
    threads: int | None = None,
    batch_size: int = 64,
    use_cache: bool = True,
    seed: int = 0,
    show_progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[ResultRow]:
    """Retrieval quality and speed against vector size, raw truncation vs whitening, per task.

    For each task: encode every unique sentence of `split` once, fit whitening on those vectors,
    then for each (method, k) build a `factory` index over the k-dim vectors and search it with
    the positive pairs' sentence1 (index.retrieval_set). Rows go to out_dir/retrieval.csv in long
    format as each task finishes (a re-run skips finished cells); out_dir/retrieval.png plots
    recall@10 and QPS against k with Su's 8.33 ln N line.

    Args:
        model: --model value.
        tasks: TaskSpecs to run (the plot orders them as TASKS does).
        data_dir: the data folder (tasks.resolve_data_dir finds it when None).
        dims: sizes k; None is the model's full size.
        methods: subset of ("raw-truncate", "whitening").
        factory, search_params: the index type (default exact Flat) and its search settings.
        top_k: neighbours retrieved per query (recall@100 needs 100).
        limit: use only the first `limit` pairs of each split (quick runs on a CPU).
        threads: FAISS threads (faiss.omp_set_num_threads); None keeps FAISS's default.
    Returns:
        the rows computed in this call (finished cells that were skipped are not repeated).
    """
    from stseval.encoders.encoder import load_encoder

    unknown = [method for method in methods if method not in REDUCTION_METHODS]
    if unknown or not methods:
        raise StsevalError(f"--methods: {', '.join(unknown) or 'none given'}; choose from {', '.join(REDUCTION_METHODS)}")
    if top_k < 10:
        raise StsevalError(f"--top-k {top_k}: must be at least 10 (recall@10, MRR@10, nDCG@10)")
    check_writable_dir(out_dir, "--out")
    if use_cache:
        check_home_writable()
    if threads is not None:
        faiss.omp_set_num_threads(threads)
    data_dir = resolve_data_dir(data_dir)
    encoder = load_encoder(model)
    too_big = [k for k in dims if k is not None and k > encoder.dimension]
    if too_big:
        raise StsevalError(f"--dims: {too_big[0]} is larger than {encoder.name}'s vector size {encoder.dimension}")
    results = ResultsFile(Path(out_dir) / SWEEP_CSV)
    base = {key: value for key, value in provenance(seed).items() if key != "seed"}
    cache = _open_cache(use_cache)
    computed, planned_keys = [], set()
    for spec in tasks:
        retrieval = task_retrieval_set(spec, split, data_dir, limit)
        if retrieval.n_queries == 0:
            log(f"{spec.name} {split}: no positive pairs, skipping")
            continue
        data_sha256 = data_fingerprint(spec, [split], data_dir) + (f":first{limit}" if limit else "")
        common = dict(model=encoder.name, model_fingerprint=encoder.fingerprint, pooling=pooling, prefix=prefix,
                      task=spec.name, split=split, data_sha256=data_sha256, seed=seed, n_pairs=retrieval.n_queries,
                      **base)
        plan = [(method, k) for method in methods for k in dims]
        keys = {(method, k): [cell_key(_row(common, method, k, metric, factory, search_params, split))
                              for metric in SWEEP_METRICS] for method, k in plan}
        planned_keys.update(key for cell in keys.values() for key in cell)
        pending = [cell for cell in plan if not all(results.has(key) for key in keys[cell])]
        if not pending:
            log(f"{spec.name}: all {len(plan)} cells done, skipping")
            continue
        log(f"{spec.name} {split}: {len(retrieval.corpus)} sentences, {retrieval.n_queries} queries, "
            f"{len(pending)} of {len(plan)} cells to compute")
        vectors = encode_texts(encoder, retrieval.corpus, pooling, spec.max_length, prefix, batch_size, cache,
                               show_progress)
        whitening = None
        if any(method == "whitening" for method, _ in pending):
            whitening = Whitening(*fit_whitening(vectors))
        task_rows = []
        for method, k in pending:
            started = time.perf_counter()
            reduced = truncate_dims(vectors, k) if method == "raw-truncate" else whiten_dims(vectors, whitening, k)
            measured = evaluate_retrieval(reduced, retrieval, factory, search_params, top_k=top_k, seed=seed)
            seconds = round(time.perf_counter() - started, 3)
            extra = (f"index={factory};search_params={search_params};top_k={top_k};n_corpus={len(retrieval.corpus)};"
                     f"n_dims={reduced.shape[1]};threads={faiss.omp_get_max_threads()};"
                     f"positive_min_score={positive_min_score(spec.label_kind):g}")
            for metric in SWEEP_METRICS:
                row = _row(common, method, k, metric, factory, search_params, split)
                row.value, row.seconds, row.extra = float(measured[metric]), seconds, extra
                task_rows.append(row)
            log(f"{spec.name} {method:12s} k={reduced.shape[1]:4d} recall@10={measured['recall@10']:.3f} "
                f"mrr@10={measured['mrr@10']:.3f} qps={measured['qps']:.0f}")
        results.add(task_rows)
        computed.extend(task_rows)
    frame = results.frame[[cell_key(record) in planned_keys for _, record in results.frame.iterrows()]]
    if not frame.empty:
        plot_sweep(frame, Path(out_dir) / SWEEP_PNG)
    return computed


def method_label(method: str, factory: str, search_params: str) -> str:
    """The `method` column: the reduction, plus the index when it is not exact Flat search."""
    if factory == DEFAULT_FACTORY and not search_params:
        return method
    return f"{method}[{factory}{';' + search_params if search_params else ''}]"


def _row(common: dict, method: str, k: int | None, metric: str, factory: str, search_params: str,
         split: str) -> ResultRow:
    """A result row for one (method, k, metric) cell, value not filled in yet."""
    return ResultRow(method=method_label(method, factory, search_params), dims="full" if k is None else str(k),
                     fit_on=f"{split}-corpus" if method == "whitening" else "", metric=metric, value=float("nan"),
                     **common)


def plot_sweep(frame: pd.DataFrame, path: Path) -> None:
    """Plot recall@10 (top) and QPS (bottom, log scale) against k, one column per task.

    Args:
        frame: long-format sweep rows (results.read_rows or ResultsFile.frame); the corpus size N
            and the real k of "full" are read from each row's extra (n_corpus=, n_dims=).
        path: PNG to write atomically (Agg backend, fixed size and dpi).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = frame.copy()
    settings = frame["extra"].map(lambda text: dict(part.split("=", 1) for part in str(text).split(";") if "=" in part))
    frame["n_dims"] = settings.map(lambda s: int(s.get("n_dims", 0)))
    frame["n_corpus"] = settings.map(lambda s: int(s.get("n_corpus", 0)))
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    order = {name: position for position, name in enumerate(TASKS)}  # columns in TASKS order, like every grid
    task_names = sorted(dict.fromkeys(frame["task"]), key=lambda name: order.get(name, len(order)))
    figure, axes = plt.subplots(2, len(task_names), figsize=(3.6 * len(task_names) + 0.8, 6.4), dpi=120,
                                squeeze=False)
    for column, task in enumerate(task_names):
        rows = frame[frame["task"] == task]
        n_corpus = int(rows["n_corpus"].max())
        for row_index, metric in enumerate(("recall@10", "qps")):
            axis = axes[row_index][column]
            for method, group in rows[rows["metric"] == metric].groupby("method", sort=True):
                group = group.sort_values("n_dims")
                axis.plot(group["n_dims"], group["value"], marker="o", label=method)
            if n_corpus > 1:
                axis.axvline(su_min_dims(n_corpus), color="grey", linestyle="--", linewidth=1,
                             label=f"8.33 ln N = {su_min_dims(n_corpus):.0f}")
            axis.set_xscale("log", base=2)
            ticks = sorted(set(rows["n_dims"]))
            axis.set_xticks(ticks, [str(tick) for tick in ticks])
            axis.minorticks_off()
            if metric == "qps":
                axis.set_yscale("log")
            else:
                axis.set_ylim(0, 1.02)
            axis.set_title(f"{task} (N={n_corpus})" if row_index == 0 else "")
            axis.set_xlabel("dims k" if row_index == 1 else "")
            axis.set_ylabel(metric if column == 0 else "")
            axis.grid(True, alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, [label.split(" = ")[0] if "ln N" in label else label for label in labels],
                  loc="lower center", ncol=len(labels), fontsize="small", frameon=False)
    figure.tight_layout(rect=(0, 0.06, 1, 1))
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
