"""SimCSE training speed of stseval against this CPU's matmul rate, and against a plain PyTorch loop.

Measured side by side in one run (the machine is shared and noisy, so only ratios within a run count):
  1. the CPU's fp32 matmul GFLOP/s (2048 x 2048 `torch.mm`, same thread count), before and after;
  2. stseval's `train_simcse` (Su's protocol: default encoder, batch 64, lr 1e-5, dropout 0.1,
     max length 64, "query: " prefix, LCQMC sentences chosen as Su did) for warm-up + timed steps,
     with one checkpoint write among the timed steps, in a child process (its own peak RSS);
  3. a plain loop in another child: the same model and loss, one padded forward of the 2B copies,
     dense `torch.optim.Adam(foreach=True)` (what the issue measured; Su's math, no tricks).
For each it prints the step's time split into tokenise, forward, backward, optimizer, checkpoint and
logging; the useful FLOPs of the step computed from the model's shape and the batch's real token
counts (forward 2*L*(4d^2 + 2*d*ff) + 4*L^2*d per layer per sentence of L tokens; backward twice
that); the achieved GFLOP/s and fraction of the matmul rate; and the peak RSS.

With --precision fp32,bf16 it instead trains stseval's loop under each precision side by side (bf16:
forward and loss under torch.autocast, float32 weights and Adam) and prints the bf16 step time against fp32's
and the fraction of the bf16 matmul rate reached (on a CPU without native bf16 set
STSEVAL_ALLOW_EMULATED_BF16=1; the numbers then describe emulation, not native bf16).

Run (about 4 minutes on 2 CPU cores):
    .venv/bin/python benchmarks/simcse.py
    .venv/bin/python benchmarks/simcse.py --threads 2 --warmup 1 --steps 4 --task LCQMC
    .venv/bin/python benchmarks/simcse.py --precision fp32,bf16 --warmup 1 --steps 3
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stseval.common.settings import Dropout, Pooling
from stseval.data.tasks import TASKS, load_pairs, resolve_data_dir
from stseval.methods.simcse import (
    PHASES,
    SimcseSettings,
    build_loss,
    build_simcse_model,
    select_sentences,
    train_simcse,
)
from stseval.runs.results import library_versions


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def matmul_gflops(threads: int, size: int = 2048, repeats: int = 6, dtype: torch.dtype = torch.float32) -> float:
    """Best-of-`repeats` GFLOP/s of a size x size torch.mm in `dtype` on `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return best


def step_flops(tokens: int, tokens_squared: int, config) -> float:
    """Forward + backward FLOPs of one step whose sentences have real lengths L.

    tokens = sum L, tokens_squared = sum L^2."""
    d, ff, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    forward = layers * (2 * tokens * (4 * d * d + 2 * d * ff) + 4 * tokens_squared * d)
    return 3.0 * forward


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux reports KiB


def run_stseval(folder: str, texts: list[str], args: dict, queue) -> None:
    """Child: the real train_simcse; returns per-step phase seconds, token counts and peak RSS."""
    torch.set_num_threads(args["threads"])
    settings = SimcseSettings(pooling=Pooling("last-avg"), dropout=Dropout(0.1), batch_size=args["batch_size"],
                              max_length=args["max_length"], seed=0,
                              checkpoint_steps=args["warmup"] + args["steps"] - 1,
                              precision=args.get("run_precision", "fp32"))
    with tempfile.TemporaryDirectory() as tmp:
        trained = train_simcse(Path(folder), texts, settings, Path(tmp) / "run", show_progress=False,
                               max_steps=args["warmup"] + args["steps"])
    queue.put({"phases": trained.phase_log, "rss_gb": peak_rss_gb()})


def run_plain(folder: str, texts: list[str], args: dict, queue) -> None:
    """Child: a plain loop, same model and loss, one padded forward of 2B rows, dense Adam."""
    torch.set_num_threads(args["threads"])
    torch.manual_seed(0)
    model = build_simcse_model(Path(folder), Pooling("last-avg"), Dropout(0.1), args["max_length"], device="cpu")
    loss_fn = build_loss(model, "su")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, foreach=True)
    batch = args["batch_size"]
    log = []
    for step in range(args["warmup"] + args["steps"]):
        times = dict.fromkeys(PHASES, 0.0)
        tick = time.perf_counter()
        features = model.preprocess(texts[step * batch:(step + 1) * batch])
        doubled = {k: torch.cat([v, v]) if isinstance(v, torch.Tensor) else v for k, v in features.items()}
        times["tokenize"] = time.perf_counter() - tick
        tick = time.perf_counter()
        first, second = model(doubled)["sentence_embedding"].chunk(2)
        loss = loss_fn.compute_loss_from_embeddings([first, second], None)
        times["forward"] = time.perf_counter() - tick
        tick = time.perf_counter()
        loss.backward()
        times["backward"] = time.perf_counter() - tick
        tick = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad()
        times["optimizer"] = time.perf_counter() - tick
        lengths = features["attention_mask"].sum(dim=1).tolist() * 2
        times["tokens"], times["tokens_squared"] = sum(lengths), sum(length * length for length in lengths)
        times["padded_tokens"] = int(doubled["attention_mask"].numel())
        log.append(times)
    queue.put({"phases": log, "rss_gb": peak_rss_gb()})


def in_child(target, *args) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def report(name: str, result: dict, warmup: int, config, matmul: float, checkpoint_every: int = 100) -> float:
    """Print a step's phases; a checkpoint write counts once per `checkpoint_every` steps (the default cadence)."""
    timed = result["phases"][warmup:]
    seconds = {phase: float(np.mean([step.get(phase, 0.0) for step in timed])) for phase in PHASES}
    writes = [step["checkpoint"] for step in timed if step.get("checkpoint", 0.0) > 0]
    seconds["checkpoint"] = (float(np.mean(writes)) / checkpoint_every) if writes else 0.0
    step_seconds = sum(seconds.values())
    tokens = float(np.mean([step["tokens"] for step in timed]))
    flops = float(np.mean([step_flops(step["tokens"], step["tokens_squared"], config) for step in timed]))
    achieved = flops / step_seconds / 1e9
    split = "  ".join(f"{phase}={seconds[phase]:.2f}s" for phase in PHASES)
    print(f"{name:8s} step={step_seconds:6.2f}s  {split}")
    if writes:
        print(f"{'':8s} one checkpoint write = {np.mean(writes):.2f}s, counted as 1/{checkpoint_every} per step "
              "(--checkpoint-steps default 100)")
    print(f"{'':8s} real tokens/step={tokens:6.0f}  useful FLOPs/step={flops / 1e9:6.1f} G  "
          f"achieved={achieved:5.1f} GFLOP/s = {achieved / matmul:5.1%} of matmul  peak RSS={result['rss_gb']:.2f} GB")
    return step_seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="LCQMC")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prefix", default="query: ")
    parser.add_argument("--precision", default=None, help="fp32,bf16: compare stseval's loop under each instead")
    args = parser.parse_args()

    from stseval.encoders.encoder import load_encoder

    encoder = load_encoder("default")
    config = encoder.model.config
    pairs = load_pairs(TASKS[args.task], "test", resolve_data_dir(None))
    sentences = [text for pair in pairs for text in (pair.sentence1, pair.sentence2)]
    n_steps = args.warmup + args.steps
    texts = [args.prefix + text for text in select_sentences(sentences, args.batch_size * n_steps, 0)]
    folder = str(encoder.folder)
    print(f"machine: {platform.machine()} {cpu_name()}, {os.cpu_count()} logical CPUs; threads {args.threads}; "
          f"{library_versions()}")
    print(f"model: {encoder.name}: {config.num_hidden_layers} layers, d={config.hidden_size}, "
          f"ff={config.intermediate_size}, "
          f"{sum(p.numel() for p in encoder.model.parameters()) / 1e6:.0f}M parameters; batch {args.batch_size} "
          f"sentences x 2 copies, {args.task} sentences with {args.prefix!r}; "
          f"{args.warmup} warm-up + {args.steps} timed steps")
    del encoder

    options = vars(args)
    if args.precision:
        return compare_precisions(folder, texts, options, config)
    before = matmul_gflops(args.threads)
    ours = in_child(run_stseval, folder, texts, options)
    middle = matmul_gflops(args.threads)
    plain = in_child(run_plain, folder, texts, options)
    after = matmul_gflops(args.threads)
    matmul = float(np.median([before, middle, after]))
    print(f"matmul fp32 2048^2, {args.threads} threads: {before:.1f} / {middle:.1f} / {after:.1f} GFLOP/s "
          f"(before / between / after; median {matmul:.1f} used)")
    ours_s = report("stseval", ours, args.warmup, config, matmul)
    plain_s = report("plain", plain, args.warmup, config, matmul)
    for name, result in (("stseval", ours), ("plain", plain)):
        padded = float(np.mean([step["padded_tokens"] for step in result["phases"][args.warmup:]]))
        real = float(np.mean([step["tokens"] for step in result["phases"][args.warmup:]]))
        print(f"{name} computes {padded:.0f} padded tokens/step for {real:.0f} real ones ({padded / real:.2f}x)")
    print(f"ratio: plain step / stseval step = {plain_s / ours_s:.2f}x")
    return 0


def compare_precisions(folder: str, texts: list[str], options: dict, config) -> int:
    """stseval's loop under each --precision, side by side, with the matmul rate of each dtype."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    step_seconds = {}
    for precision in options["precision"].split(","):
        rate = matmul_gflops(options["threads"], dtype=dtypes[precision])
        print(f"matmul {precision} 2048^2, {options['threads']} threads: {rate:.1f} GFLOP/s")
        result = in_child(run_stseval, folder, texts, {**options, "run_precision": precision})
        step_seconds[precision] = report(precision, result, options["warmup"], config, rate)
    if "fp32" in step_seconds:
        for precision, seconds in step_seconds.items():
            print(f"{precision}: step {seconds:.2f}s = {step_seconds['fp32'] / seconds:.2f}x fp32's speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
