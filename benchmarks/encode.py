"""Benchmark stseval.encoders.encode against sentence-transformers, and the embedding cache.

Two comparisons on real LCQMC test sentences (sentence1, a seeded sample):

1. all poolings in one pass: stseval's `encode` with cls, last-avg, first-last-avg and max (one
   forward pass per batch serves all four) versus `SentenceTransformer.encode` once per pooling,
   each with the matching Pooling module (cls / mean / max). sentence-transformers has no
   first+last-layer pooling, so its mean Pooling stands in for first-last-avg as the cost proxy:
   the same tokenisation and forward pass, only the pooling arithmetic differs.
2. cached re-run: `encode` with an empty cache (encode + write) versus the same call again with a
   fresh EmbeddingCache object on the same folder (as a new process would see it: checksums are
   verified, nothing is encoded).

Before timing, answers are checked where they are comparable: stseval cls / last-avg / max against
sentence-transformers cls / mean / max, and cached against uncached vectors. One warm-up run of
each variant is dropped; each timing is the best of --repeats runs.

Run:  .venv/bin/python benchmarks/encode.py [--model default] [--n 1000] [--threads 2]
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

from stseval.cache import EmbeddingCache  # noqa: E402
from stseval.encoders import encode, load_encoder  # noqa: E402

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

    sentences = read_sentences(args.data_dir, args.n, args.seed)
    encoder = load_encoder(args.model)
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

    t_st = best_of(args.repeats, st_once_per_pooling)
    t_ours = best_of(args.repeats, stseval_one_pass)
    print(f"{len(POOLINGS)}-poolings n={len(sentences):5d} st_per_pooling={t_st * 1e3:9.1f}ms "
          f"stseval_one_pass={t_ours * 1e3:9.1f}ms speedup={t_st / t_ours:5.2f}x")

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


if __name__ == "__main__":
    main()
