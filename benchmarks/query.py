"""Benchmark the cost of small `encode` calls (queries) against a bare transformers forward.

For 1 sentence and for N short sentences in one call (real LCQMC test sentence1, a seeded sample), side by
side in one run, pooling last-avg, "query: " prefix, torch threads pinned:

- bare:        tokenizer(padding=True) + model(**batch) + masked mean; what a user would write by hand
               (a sentence's vector then depends on its batch-mates' lengths: not invariant).
- fill32:      stseval's grid path: every batch one padded width, filled with copies to 32 rows.
- single:      every sentence alone, a (1, own length) forward: depends on the sentence alone by construction.
- query:       stseval's query path (`encode(..., query=True)`, what index search uses): QUERY_ROWS rows with
               fill copies, widths rounded up to QUERY_WIDTH_STEP.
- RxwY:        candidates measured before choosing: x rows with fill copies, widths rounded up to a multiple of Y
               (R2w4 is what became the query path).
- exact-rows:  grouped by width like fill32 but without the copies (NOT invariant; for reference only).

Before timing, it checks that `single` vectors of a sentence are bit-identical alone and among the others, and
prints the largest |difference| of each path to fill32. One warm-up call per variant is dropped; each time is
the median of --repeats calls.

Run:  .venv/bin/python benchmarks/query.py [--model default] [--n 20] [--threads 1,2] [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import stseval.encoders.batching as batching  # noqa: E402
from stseval.data.tasks import TASKS, load_pairs, resolve_data_dir  # noqa: E402
from stseval.encoders.encoder import encode, load_encoder  # noqa: E402
from stseval.encoders.precision import autocast  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--n", type=int, default=20, help="sentences of the many-sentence call")
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="fp32")
    return parser.parse_args()


def bare(encoder, texts: list[str]) -> np.ndarray:
    """What a user writes by hand: one padded batch, masked mean of the last layer."""
    with torch.inference_mode(), autocast(encoder.device, encoder.precision):
        batch = encoder.tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        hidden = encoder.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return ((hidden * mask).sum(1) / mask.sum(1)).numpy()


def stseval_path(encoder, texts: list[str], batch_size: int, query: bool = False) -> np.ndarray:
    return encode(encoder, texts, ["last-avg"], max_length=64, batch_size=batch_size, show_progress=False,
                  query=query)["last-avg"]


def exact_rows(encoder, texts: list[str]) -> np.ndarray:
    fill = batching.fill_rows
    batching.fill_rows = lambda rows, n: rows  # type: ignore[assignment]  # no copies: reference only
    try:
        return stseval_path(encoder, texts, 32)
    finally:
        batching.fill_rows = fill  # type: ignore[assignment]


def coarse(encoder, texts: list[str], rows: int, step: int = 8) -> np.ndarray:
    """R rows per forward (fill copies up to R), widths rounded up to a multiple of `step` (a candidate)."""
    widths = batching.bucket_widths
    batching.bucket_widths = lambda lengths: (np.ceil(lengths / step) * step).astype(np.int64)  # type: ignore
    try:
        return stseval_path(encoder, texts, rows)
    finally:
        batching.bucket_widths = widths  # type: ignore[assignment]


def timed(function, repeats: int) -> float:
    function()  # warm-up, dropped
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    args = parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {cpu}; torch {torch.__version__}; "
          f"seed {args.seed}; model {args.model}; precision {args.precision}")
    encoder = load_encoder(args.model, precision=args.precision)
    pairs = load_pairs(TASKS["LCQMC"], "test", resolve_data_dir(None))
    chooser = random.Random(args.seed)
    texts = ["query: " + pair.sentence1 for pair in chooser.sample(pairs, args.n)]
    lengths = [len(ids) for ids in encoder.tokenizer(texts)["input_ids"]]
    print(f"{args.n} sentences, tokens {min(lengths)}-{max(lengths)} (mean {np.mean(lengths):.1f}), "
          f"{len(set(batching.bucket_widths(np.array(lengths))))} distinct widths")

    # answers first: single is invariant by construction; how far is each path from fill32?
    alone = stseval_path(encoder, texts[:1], 1)
    among = stseval_path(encoder, texts, 1)
    print(f"single: sentence 0 alone == among {args.n}: {np.array_equal(alone[0], among[0])}")
    query_alone = stseval_path(encoder, texts[:1], 64, query=True)
    query_among = stseval_path(encoder, texts, 64, query=True)
    print(f"query: sentence 0 alone == among {args.n}: {np.array_equal(query_alone[0], query_among[0])}")
    reference = stseval_path(encoder, texts, 64)
    others = (("bare", bare(encoder, texts)), ("single", among), ("query", query_among),
              ("exact-rows", exact_rows(encoder, texts)))
    for name, vectors in others:
        print(f"  max |{name} - fill32| = {np.abs(vectors - reference).max():.2e}")

    variants = {
        "fill32": lambda batch: stseval_path(encoder, batch, 64),
        "single": lambda batch: stseval_path(encoder, batch, 1),
        "query": lambda batch: stseval_path(encoder, batch, 64, query=True),
        "R4w8": lambda batch: coarse(encoder, batch, 4),
        "exact-rows": lambda batch: exact_rows(encoder, batch),
    }
    for threads in (int(value) for value in args.threads.split(",")):
        torch.set_num_threads(threads)
        for label, batch in (("1 sentence", texts[:1]), (f"{args.n} sentences", texts)):
            base = timed(lambda batch=batch: bare(encoder, batch), args.repeats)
            line = f"threads={threads} {label:13s} bare={base * 1e3:7.1f}ms"
            for name, function in variants.items():
                seconds = timed(lambda function=function, batch=batch: function(batch), args.repeats)
                line += f" {name}={seconds * 1e3:7.1f}ms ({seconds / base:4.2f}x)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
