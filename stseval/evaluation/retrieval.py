"""Retrieval evaluation from STS pairs: queries and relevant documents, recall/MRR/nDCG, Su's 8.33 ln N.

Retrieval reuses the STS pairs (see `retrieval_set`): each positive pair (label 1; STS-B score >= 4, see
POSITIVE_MIN_SCORE) is a query (sentence1) with one relevant document (sentence2), searched among every
unique sentence of the split. The query's own sentence is in that corpus and would always rank first, so it
is dropped from its results, unless it is also the relevant document (a pair with sentence1 == sentence2),
see `exclude_self`. Other positives of the same sentence1 are not filtered out: each query is scored against
its own pair's sentence2 only.

Pure numpy, no faiss: the report's sweep plot draws 8.33 ln N without loading an index library. Building
and timing an index on a RetrievalSet is `stseval.evaluation.index_eval.evaluate_retrieval`.

Reference for the dimension rule: Su, "最小熵原理（六）：词向量的维度应该怎么选择？",
kexue.fm/archives/7695: n > 8.33 ln N dimensions suffice for N items (about 96 for N = 1e5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stseval.common.errors import StsevalError

# Su's rule of thumb: n > 8.33 ln N dimensions are enough to embed N items
SU_LOG_FACTOR = 8.33

# A pair is a (query, relevant document) pair when its gold score reaches this. Keyed by
# TaskSpec.label_kind: 0/1 labels need 1; STS-B's 0-5 similarity counts 4 ("mostly equivalent") and up.
POSITIVE_MIN_SCORE = {"binary": 1.0, "graded": 4.0}

RETRIEVAL_METRICS = ("recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10")


def su_min_dims(n_items: int) -> float:
    """Su's lower bound on embedding dimension for n_items items: 8.33 ln N (about 96 for N = 1e5)."""
    return SU_LOG_FACTOR * math.log(n_items)


@dataclass(frozen=True)
class RetrievalSet:
    """Queries and relevant documents drawn from one split's pairs.

    corpus: every unique sentence of the split (sentence1 and sentence2 of all pairs, positive or
    not), in order of first appearance. query_ids / relevant_ids: (q,) int64 corpus rows of each
    query's text (a positive pair's sentence1) and of its one relevant document (that pair's sentence2).
    """

    corpus: list[str]
    query_ids: np.ndarray
    relevant_ids: np.ndarray

    @property
    def n_queries(self) -> int:
        return int(len(self.query_ids))


def positive_min_score(label_kind: str) -> float:
    """The gold score from which a pair counts as a (query, relevant document) pair."""
    try:
        return POSITIVE_MIN_SCORE[label_kind]
    except KeyError:
        raise StsevalError(f"label_kind {label_kind!r} has no positive threshold; "
                           f"known: {', '.join(POSITIVE_MIN_SCORE)}") from None


def retrieval_set(pairs, min_score: float) -> RetrievalSet:
    """Turn STS pairs into a retrieval task.

    Each distinct positive pair (score >= min_score) is one query: its sentence1 searches the corpus
    of every unique sentence of the split, and its sentence2 is the one relevant document. A
    sentence1 with several positive partners gives several queries, each scored against its own
    partner only. Exact duplicate (sentence1, sentence2) positives count once.

    Args:
        pairs: tasks.Pair objects (sentence1, sentence2, score) of one split.
        min_score: positive threshold, `positive_min_score(spec.label_kind)`.
    Returns:
        a RetrievalSet.
    """
    row_of: dict[str, int] = {}
    query_ids, relevant_ids, seen = [], [], set()
    for pair in pairs:
        first = row_of.setdefault(pair.sentence1, len(row_of))
        second = row_of.setdefault(pair.sentence2, len(row_of))
        if pair.score >= min_score and (first, second) not in seen:
            seen.add((first, second))
            query_ids.append(first)
            relevant_ids.append(second)
    return RetrievalSet(list(row_of), np.array(query_ids, dtype=np.int64), np.array(relevant_ids, dtype=np.int64))


def exclude_self(ids: np.ndarray, query_ids: np.ndarray, relevant_ids: np.ndarray, top_k: int) -> np.ndarray:
    """Drop each query's own sentence from its results, unless that sentence is its relevant document.

    The query text is always in the corpus (it is a sentence of the split), where it would trivially
    rank first; so search top_k + 1 neighbours and call this to keep the top_k others. When a
    positive pair has sentence1 == sentence2 the query's own row is its answer and is kept.

    Args:
        ids: (q, m) int64 search results, m >= top_k (usually top_k + 1).
        query_ids: (q,) corpus row of each query's text; relevant_ids: (q,) of its relevant document.
    Returns:
        (q, top_k) int64 ranked corpus rows, relative order kept.
    """
    drop = (ids == query_ids[:, None]) & (query_ids != relevant_ids)[:, None]
    order = np.argsort(drop, axis=1, kind="stable")  # kept entries first, in their original order
    return np.take_along_axis(ids, order, axis=1)[:, :top_k]


def retrieval_metrics(ranked_ids: np.ndarray, relevant_ids: np.ndarray) -> dict[str, float]:
    """recall@1/10/100, MRR@10 and nDCG@10 with one relevant document per query.

    With a single relevant document at rank r (1-based; none if not retrieved): recall@k = [r <= k],
    MRR@10 = 1/r if r <= 10, nDCG@10 = 1/log2(r + 1) if r <= 10 (the ideal DCG is 1). Each is
    averaged over queries.

    Args:
        ranked_ids: (q, k) int64 corpus rows, best first, k >= 100 (fewer caps recall@100 at recall@k).
        relevant_ids: (q,) int64 corpus row of each query's relevant document.
    Returns:
        {"recall@1", "recall@10", "recall@100", "mrr@10", "ndcg@10"} -> mean over queries.
    """
    if len(ranked_ids) == 0:
        return {name: float("nan") for name in RETRIEVAL_METRICS}
    hits = ranked_ids == relevant_ids[:, None]
    ranks = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, np.inf)
    in_top10 = ranks <= 10
    return {
        "recall@1": float(np.mean(ranks <= 1)),
        "recall@10": float(np.mean(in_top10)),
        "recall@100": float(np.mean(ranks <= 100)),
        "mrr@10": float(np.mean(np.where(in_top10, 1.0 / ranks, 0.0))),
        "ndcg@10": float(np.mean(np.where(in_top10, 1.0 / np.log2(ranks + 1), 0.0))),
    }
