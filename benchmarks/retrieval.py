"""Exact vs whitened-k vs approximate FAISS search: QPS, build time, memory, recall.

Part 1, ATEC test: every unique sentence of the split is the corpus (about 40k), the positive
pairs' sentence1 are the queries (stseval.evaluation.retrieval.retrieval_set). Exact inner-product search over raw
384-d vectors against whitened 128-d and 64-d vectors (whitening fitted on the corpus), with
raw truncation to the same sizes for contrast. Each line: QPS and its ratio to 384-d, build time,
index size, the task's recall@10 / MRR@10, and agree@10 = overlap with the 384-d exact top 10.

Part 2, synthetic: N unit vectors (default 1M) of 384 dims with a power-law spectrum and
topic / paraphrase-group structure like sentence embeddings (SyntheticCorpus); queries are new
members of existing groups. Exact Flat search is the reference; whitened-k, HNSW32 and IVF-PQ
lines report recall@10 against it (share of the exact top 10 they find), with speed and memory.

Usage:
    .venv/bin/python benchmarks/retrieval.py                        # both parts
    .venv/bin/python benchmarks/retrieval.py --skip-atec --n 200000 # synthetic only, smaller
    .venv/bin/python benchmarks/retrieval.py --skip-synthetic --vectors atec_test_last-avg.npy
    .venv/bin/python benchmarks/retrieval.py --skip-synthetic --limit 5000 --save-vectors v.npy

Threads are pinned (faiss.omp_set_num_threads, torch.set_num_threads), the seed is fixed, one
warm-up search per configuration is dropped, and QPS is the best of at least 3 batch searches of
4096 queries (the ATEC queries are tiled to 4096, see stseval.evaluation.index_eval.evaluate_retrieval).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import faiss
import numpy as np

from stseval.evaluation.index_eval import evaluate_retrieval
from stseval.evaluation.retrieval import exclude_self
from stseval.methods.index import (
    build_index,
    index_nbytes,
    search,
    truncate_dims,
    whiten_dims,
)
from stseval.methods.whitening import Whitening, fit_whitening


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="FAISS (and torch) threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-atec", action="store_true")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--model", default="default", help="encoder for ATEC when --vectors is not given")
    parser.add_argument("--pooling", default="last-avg")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None, help="use the first N pairs of ATEC test")
    parser.add_argument("--vectors", type=Path, default=None,
                        help=".npy of the ATEC test corpus vectors (rows = retrieval_set(...).corpus order)")
    parser.add_argument("--save-vectors", type=Path, default=None, help="save the encoded ATEC corpus here")
    parser.add_argument("--n", type=int, default=1_000_000, help="synthetic corpus size")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--n-queries", type=int, default=4096,
                        help="one batch; keep queries x dims above ~1e5 floats, below it FAISS's Flat path is "
                             "several times slower per query")
    parser.add_argument("--hnsw-n", type=int, default=None,
                        help="build HNSW on the first M synthetic vectors only (HNSW build is the slow part)")
    return parser.parse_args()


def best_time(run, warm_up, min_time_s: float = 1.0, min_runs: int = 3, max_runs: int = 10) -> float:
    """Best wall time of repeated run() calls, after one dropped warm_up() call."""
    warm_up()  # page the index in, start the threads; not timed
    timings: list[float] = []
    while len(timings) < min_runs or (sum(timings) < min_time_s and len(timings) < max_runs):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings)


def overlap_at_10(ids: np.ndarray, reference_ids: np.ndarray) -> float:
    """Mean fraction of each reference top 10 found in ids' top 10 (recall@10 against exact search)."""
    return float(np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(ids, reference_ids, strict=True)]))


def header(args: argparse.Namespace) -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"machine: {cpu}, {os.cpu_count()} logical CPUs; load average {os.getloadavg()[0]:.1f}")
    print(f"faiss {faiss.__version__}, numpy {np.__version__}; threads={args.threads} seed={args.seed}")


# ---------------------------------------------------------------------------------------------
# part 1: ATEC test


def atec(args: argparse.Namespace) -> None:
    from stseval.data.tasks import TASKS, resolve_data_dir
    from stseval.runs.retrieval import encode_texts, task_retrieval_set

    retrieval = task_retrieval_set(TASKS["ATEC"], "test", resolve_data_dir(args.data_dir), args.limit)
    if args.vectors is not None:
        vectors = np.load(args.vectors)
        if len(vectors) != len(retrieval.corpus):
            limit = f" (--limit {args.limit})" if args.limit else ""
            raise SystemExit(f"{args.vectors}: {len(vectors)} rows, but the ATEC test corpus{limit} "
                             f"has {len(retrieval.corpus)}")
        source = str(args.vectors)
    else:
        import torch

        from stseval.encoders.cache import EmbeddingCache
        from stseval.encoders.encoder import load_encoder

        torch.set_num_threads(args.threads)
        encoder = load_encoder(args.model)
        started = time.perf_counter()
        vectors = encode_texts(encoder, retrieval.corpus, args.pooling, TASKS["ATEC"].max_length, prefix=args.prefix,
                               cache=EmbeddingCache(), show_progress=False)
        source = f"{encoder.name} {args.pooling}, encoded/cached in {time.perf_counter() - started:.0f} s"
        if args.save_vectors is not None:
            np.save(args.save_vectors, vectors)
    print(f"\nATEC test: corpus N={len(retrieval.corpus)} sentences, {retrieval.n_queries} queries "
          f"(positive pairs), vectors {vectors.shape[1]}-d from {source}")
    whitening = Whitening(*fit_whitening(vectors))

    def top10(corpus_vectors: np.ndarray) -> np.ndarray:
        """Exact top 10 of each query over these vectors, its own sentence left out."""
        ids = search(build_index(corpus_vectors), corpus_vectors[retrieval.query_ids], 11)[1]
        return exclude_self(ids, retrieval.query_ids, retrieval.relevant_ids, 10)

    reference_ids = top10(vectors)
    configs = [("raw", None), ("whitening", 128), ("whitening", 64), ("raw-truncate", 128), ("raw-truncate", 64)]
    baseline_qps = None
    for method, k in configs:
        reduced = truncate_dims(vectors, k) if method != "whitening" else whiten_dims(vectors, whitening, k)
        measured = evaluate_retrieval(reduced, retrieval, top_k=100, seed=args.seed, min_time_s=1.0)
        agree = overlap_at_10(top10(reduced), reference_ids)
        baseline_qps = baseline_qps or measured["qps"]
        print(f"ATEC  Flat {method:12s} d={reduced.shape[1]:3d} qps={measured['qps']:8.0f} "
              f"speedup={measured['qps'] / baseline_qps:5.2f}x build={measured['build_s'] * 1e3:7.1f}ms "
              f"mem={measured['index_bytes'] / 2**20:6.1f}MB recall@10={measured['recall@10']:.3f} "
              f"mrr@10={measured['mrr@10']:.3f} agree@10={agree:.3f}")


# ---------------------------------------------------------------------------------------------
# part 2: synthetic scale


class SyntheticCorpus:
    """Unit vectors shaped like sentence embeddings: topics > paraphrase groups > sentences.

    1000 topic centres; groups of about 10 "paraphrases" around group centres drawn near a topic;
    sentences near their group centre. Every offset has a power-law spectrum (variance of direction
    i ~ 1/i) in a random rotation, so a few directions dominate, as in BERT-like embeddings. A
    query is a fresh member of an existing group: its exact top 10 is mostly that group.
    """

    def __init__(self, n: int, dim: int, seed: int, group_size: int = 10):
        self.rng = np.random.default_rng(seed)
        self.dim = dim
        self.rotation = np.linalg.qr(self.rng.normal(size=(dim, dim)))[0].astype(np.float32)
        self.scales = (np.arange(1, dim + 1) ** -0.5).astype(np.float32)
        topics = self._offsets(1000)
        n_groups = max(1, n // group_size)
        self.group_centres = topics[self.rng.integers(0, 1000, n_groups)] + 0.6 * self._offsets(n_groups)
        self.group_of_row = self.rng.integers(0, n_groups, n)

    def _offsets(self, n: int, chunk: int = 100_000) -> np.ndarray:
        """(n, dim) float32 Gaussian offsets with the power-law spectrum, before rotation."""
        return np.concatenate([self.rng.normal(size=(min(chunk, n - start), self.dim)).astype(np.float32)
                               * self.scales for start in range(0, n, chunk)])

    def members(self, groups: np.ndarray, chunk: int = 100_000) -> np.ndarray:
        """(len(groups), dim) float32 unit vectors: one new sentence of each given group."""
        vectors = np.empty((len(groups), self.dim), dtype=np.float32)
        for start in range(0, len(groups), chunk):
            part = groups[start:start + chunk]
            centres = self.group_centres[part] + 0.3 * self._offsets(len(part))
            vectors[start:start + len(part)] = centres @ self.rotation
        faiss.normalize_L2(vectors)
        return vectors


def synthetic(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    corpus = SyntheticCorpus(args.n, args.dim, args.seed)
    vectors = corpus.members(corpus.group_of_row)
    queries = corpus.members(corpus.group_of_row[corpus.rng.choice(args.n, size=args.n_queries, replace=False)])
    rng = np.random.default_rng(args.seed + 1)
    print(f"\nsynthetic: N={args.n} d={args.dim}, {args.n_queries} queries (new members of existing paraphrase "
          f"groups of ~10), generated in {time.perf_counter() - started:.0f} s; recall@10 = share of the exact "
          "384-d top 10 found")

    def line(name: str, n: int, index, query_vectors, reference_ids, build_s: float, exact_qps: float | None):
        holder = {}
        seconds = best_time(lambda: holder.__setitem__("ids", index.search(query_vectors, 10)[1]),
                            lambda: index.search(query_vectors[:50], 10))
        qps = len(query_vectors) / seconds
        speedup = f"{qps / exact_qps:6.2f}x" if exact_qps else "  1.00x"
        recall = overlap_at_10(holder["ids"], reference_ids) if reference_ids is not None else 1.0
        print(f"synth N={n:7d} {name:32s} build={build_s:7.1f}s mem={index_nbytes(index) / 2**20:7.1f}MB "
              f"qps={qps:8.1f} speedup={speedup} recall@10={recall:.3f}")
        return qps, holder["ids"]

    started = time.perf_counter()
    exact = build_index(vectors)
    exact_qps, exact_ids = line("Flat d=384 (exact)", args.n, exact, queries, None, time.perf_counter() - started, None)
    del exact

    # whitened-k exact search: fit on a 100k sample (the covariance of 1M rows in float64 is 3 GB)
    sample = vectors[rng.choice(args.n, size=min(args.n, 100_000), replace=False)]
    whitening = Whitening(*fit_whitening(sample))
    for k in (128, 64):
        started = time.perf_counter()
        reduced = whiten_dims(vectors, whitening, k)
        index = build_index(reduced)
        line(f"Flat whitened d={k}", args.n, index, whiten_dims(queries, whitening, k), exact_ids,
             time.perf_counter() - started, exact_qps)
        del index, reduced

    for factory, params in (("IVF1024,PQ16", ("nprobe=1", "nprobe=16")), ("IVF1024,PQ64", ("nprobe=16",))):
        started = time.perf_counter()
        index = build_index(vectors, factory, seed=args.seed)
        build_s = time.perf_counter() - started
        for param in params:
            faiss.ParameterSpace().set_index_parameters(index, param)
            line(f"{factory} {param}", args.n, index, queries, exact_ids, build_s, exact_qps)
        del index

    hnsw_n = min(args.hnsw_n or args.n, args.n)
    if hnsw_n < args.n:  # the reference has to be exact search over the same subset
        subset_exact = build_index(vectors[:hnsw_n])
        hnsw_queries = queries  # noisy copies may point outside the subset: fine for recall vs exact
        exact_sub_qps, reference = line("Flat d=384 (exact, HNSW subset)", hnsw_n, subset_exact, hnsw_queries,
                                        None, 0.0, None)
        del subset_exact
    else:
        hnsw_queries, exact_sub_qps, reference = queries, exact_qps, exact_ids
    started = time.perf_counter()
    index = build_index(vectors[:hnsw_n], "HNSW32", seed=args.seed)
    build_s = time.perf_counter() - started
    for param in ("efSearch=16", "efSearch=64", "efSearch=256"):
        faiss.ParameterSpace().set_index_parameters(index, param)
        line(f"HNSW32 {param}", hnsw_n, index, hnsw_queries, reference, build_s, exact_sub_qps)


def main() -> None:
    args = parse_args()
    faiss.omp_set_num_threads(args.threads)
    header(args)
    if not args.skip_atec:
        atec(args)
    if not args.skip_synthetic:
        synthetic(args)


if __name__ == "__main__":
    main()
