"""A FAISS index evaluated on a retrieval set: build it, search the queries, score and time the search.

The scoring is `stseval.evaluation.retrieval` (pure numpy); the index is `stseval.methods.index` (faiss), so
this module is the one place of evaluation that loads faiss.
"""

from __future__ import annotations

import time

import numpy as np

from stseval.evaluation.retrieval import RetrievalSet, exclude_self, retrieval_metrics
from stseval.methods.index import DEFAULT_FACTORY, build_index, index_nbytes, search


def evaluate_retrieval(corpus_vectors: np.ndarray, retrieval: RetrievalSet, factory: str = DEFAULT_FACTORY,
                       search_params: str = "", top_k: int = 100, seed: int = 0, timing_batch: int = 4096,
                       min_runs: int = 3, min_time_s: float = 0.2) -> dict[str, float]:
    """Build an index over a corpus, search it with the retrieval queries, score and time it.

    The queries are corpus rows (`retrieval.query_ids`), so no text is encoded twice. Search asks
    for top_k + 1 neighbours and drops each query's own sentence (`exclude_self`).

    QPS is batch throughput: the queries, repeated up to `timing_batch` rows, are searched in one
    call, min_runs times (and for at least min_time_s), after one dropped warm-up; the best run
    counts, as the one least disturbed by other work. The fixed batch keeps QPS comparable across
    tasks and dims: FAISS's exact search ran 4-9x slower per query when a batch held fewer than
    roughly 1e5 floats (queries x dims; faiss-cpu 1.15.1 with its OpenBLAS, one thread), so 330
    STS-B queries would otherwise time a different code path than 3610 ATEC ones.

    Args:
        corpus_vectors: (n, d) vectors of retrieval.corpus, already truncated or whitened.
        retrieval: from `retrieval_set`.
        factory, search_params, seed: see `build_index`.
        top_k: ranking depth scored (recall@100 needs 100).
        timing_batch: rows per timed search call (at least the number of queries).
    Returns:
        `retrieval_metrics` plus "qps" (queries/s, batch search), "build_s" (train + add seconds) and
        "index_bytes" (serialised size).
    """
    started = time.perf_counter()
    index = build_index(corpus_vectors, factory, search_params, seed=seed)
    build_s = time.perf_counter() - started
    queries = corpus_vectors[retrieval.query_ids]
    _, ids = search(index, queries, top_k + 1)
    ranked = exclude_self(ids, retrieval.query_ids, retrieval.relevant_ids, top_k)
    batch = np.resize(queries, (max(timing_batch, len(queries)), queries.shape[1]))  # tiles the queries
    search(index, batch[:32], top_k + 1)  # warm-up: page in the index, spin up threads; not timed
    timings: list[float] = []
    while len(timings) < max(min_runs, 1) or (sum(timings) < min_time_s and len(timings) < 20):
        started = time.perf_counter()
        search(index, batch, top_k + 1)
        timings.append(time.perf_counter() - started)
    return {**retrieval_metrics(ranked, retrieval.relevant_ids), "qps": len(batch) / max(min(timings), 1e-9),
            "build_s": build_s, "index_bytes": float(index_nbytes(index))}
