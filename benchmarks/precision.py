"""Every non-reference encoding path judged by Spearman, not only by cosine: fp32, bf16 and each backend.

Runs the default whitening grid (the five tasks; cls, last-avg, first-last-avg; raw and BERT-whitening
full / 128 fitted on the valid split's sentences, scored on test) once per path, in one process, the paths
one after another per task so their speeds are measured side by side. Prints per path: sentences/s of the
encoding, its ratio to fp32, per-sentence cosine to the fp32 vectors (min), and the largest |Spearman
difference| to fp32 over all cells (in points, x100). --out writes cells.csv (every cell of every path) and
summary.md (the table plus provenance: machine, CPU flags, versions, command).

A path that cannot run here is reported as skipped with its reason (e.g. bf16 on a CPU without native bf16:
set STSEVAL_ALLOW_EMULATED_BF16=1 to measure emulated bf16, which says nothing about native speed).

Run (small sample, a few minutes):
    .venv/bin/python benchmarks/precision.py --limit 200 --tasks STS-B --threads 2
Full grid (every pair; about 180k sentences per path): see the estimate the small run prints.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from stseval.common.errors import StsevalError  # noqa: E402
from stseval.common.fileio import atomic_path, write_text_atomic  # noqa: E402
from stseval.data.tasks import TASKS, data_fingerprint, load_pairs, resolve_data_dir  # noqa: E402
from stseval.encoders.encoder import encode, load_encoder  # noqa: E402
from stseval.evaluation.metrics import cosine_scores, spearman  # noqa: E402
from stseval.methods.whitening import apply_whitening, fit_whitening  # noqa: E402
from stseval.options import NATIVE_BF16_FLAGS, cpu_flags  # noqa: E402
from stseval.runs.results import library_versions, machine_description  # noqa: E402

POOLINGS = ["cls", "last-avg", "first-last-avg"]
DIMS = [None, 128]
PATHS = {"fp32": {}, "bf16": {"precision": "bf16"}, "int8": {"backend": "int8"}, "onnx": {"backend": "onnx"},
         "onnx-int8": {"backend": "onnx-int8"}}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--tasks", default="ATEC,BQ,LCQMC,PAWSX,STS-B")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated: " + ", ".join(PATHS))
    parser.add_argument("--limit", type=int, default=None, help="first N pairs of each split (small sample)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--prefix", default="query: ")
    parser.add_argument("--out", type=Path, default=None, help="folder for cells.csv and summary.md")
    return parser.parse_args()


def task_cells(vectors: dict, n_test: int, gold: np.ndarray) -> dict[tuple[str, str, str], float]:
    """{(pooling, method, dims): Spearman on test} for raw and whitening fitted on valid (both sides)."""
    cells = {}
    for pooling in POOLINGS:
        test_a, test_b = vectors[pooling][:n_test], vectors[pooling][n_test:2 * n_test]
        cells[(pooling, "raw", "full")] = spearman(cosine_scores(test_a, test_b), gold)
        fit_on = vectors[pooling][2 * n_test:]  # the valid split's sentences
        for dims in DIMS:
            mu, kernel = fit_whitening(fit_on, dims)
            scores = cosine_scores(apply_whitening(test_a, mu, kernel), apply_whitening(test_b, mu, kernel))
            cells[(pooling, "whitening", "full" if dims is None else str(dims))] = spearman(scores, gold)
    return cells


def per_task_lines(rows: list[dict], paths: list[str]) -> list[str]:
    """Markdown table: per task and path, the largest |Spearman difference| to fp32 and the mean difference.

    Args:
        rows: cells with keys path, task, diff_to_fp32 (a fraction; shown x100 in points).
        paths: the non-reference paths, in column order.
    Returns:
        Lines of one table: a row per task, two numbers per path ("max |d| / mean d" in points).
    """
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    lines = ["Per task, over its cells (3 poolings x raw / whitening full / whitening 128): largest |Spearman "
             "difference| to fp32 / mean difference (points; negative = the path scores lower)", "",
             "| task | " + " | ".join(paths) + " |", "|---|" + "---|" * len(paths)]
    for task in tasks:
        cells = []
        for path in paths:
            diffs = np.array([row["diff_to_fp32"] * 100 for row in rows if row["task"] == task and row["path"] == path])
            cells.append(f"{np.abs(diffs).max():.2f} / {diffs.mean():+.2f}" if diffs.size else "-")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    flags = cpu_flags()
    native = sorted(flags.intersection(NATIVE_BF16_FLAGS)) or ["none"]
    command = shlex.join([sys.executable, *sys.argv])
    header = (f"machine: {machine_description()}; threads {args.threads}; native bf16 flags: {', '.join(native)}; "
              f"avx512f: {'avx512f' in flags}; {library_versions()}")
    print(header)
    data_dir = resolve_data_dir(None)
    encoders, skipped = {}, {}
    for path in args.paths.split(","):
        try:
            encoders[path] = load_encoder(args.model, **PATHS[path])
        except StsevalError as err:
            skipped[path] = str(err)
            print(f"{path:9s} skipped: {err}")
    seconds = dict.fromkeys(encoders, 0.0)
    n_sentences = 0
    rows = []
    min_cosine = dict.fromkeys(encoders, 1.0)
    for task in args.tasks.split(","):
        spec = TASKS[task]
        test = load_pairs(spec, "test", data_dir)[: args.limit]
        valid = load_pairs(spec, "valid", data_dir)[: args.limit]
        gold = np.array([pair.score for pair in test], dtype=np.float64)
        fit_sentences = list(dict.fromkeys(s for pair in valid for s in (pair.sentence1, pair.sentence2)))
        texts = [pair.sentence1 for pair in test] + [pair.sentence2 for pair in test] + fit_sentences
        n_sentences += len(set(texts))
        reference = None
        for path, encoder in encoders.items():
            started = time.perf_counter()
            vectors = encode(encoder, texts, POOLINGS, max_length=spec.max_length, prefix=args.prefix,
                             show_progress=False)
            seconds[path] += time.perf_counter() - started
            if reference is None:
                reference = vectors
            cosine = cosine_scores(vectors["last-avg"], reference["last-avg"])
            min_cosine[path] = min(min_cosine[path], float(cosine.min()))
            for (pooling, method, dims), value in task_cells(vectors, len(test), gold).items():
                rows.append({"path": path, "task": task, "pooling": pooling, "method": method, "dims": dims,
                             "spearman": value})
        print(f"{task}: {len(test)} test pairs, {len(fit_sentences)} valid sentences", flush=True)
    def cell(row: dict) -> tuple:
        return row["task"], row["pooling"], row["method"], row["dims"]

    fp32_cells = {cell(row): row["spearman"] for row in rows if row["path"] == "fp32"}
    for row in rows:
        row["diff_to_fp32"] = row["spearman"] - fp32_cells.get(cell(row), np.nan)
    lines = ["| path | sentences/s | vs fp32 | min cosine to fp32 (last-avg) | max abs Spearman diff to fp32 (points) "
             "| cells |", "|---|---|---|---|---|---|"]
    base_rate = n_sentences / seconds["fp32"] if "fp32" in seconds else float("nan")
    for path in encoders:
        rate = n_sentences / seconds[path]
        diffs = [abs(row["diff_to_fp32"]) * 100 for row in rows if row["path"] == path]
        line = (f"| {path} | {rate:.1f} | {rate / base_rate:.2f}x | {min_cosine[path]:.4f} | {max(diffs):.2f} "
                f"| {len(diffs)} |")
        lines.append(line)
        print(f"{path:9s} {rate:8.1f} sentences/s  {rate / base_rate:5.2f}x fp32  min cosine {min_cosine[path]:.4f}  "
              f"max |dSpearman| {max(diffs):.2f} points over {len(diffs)} cells")
    lines += [f"| {path} | skipped: {reason} | | | | |" for path, reason in skipped.items()]
    lines += ["", *per_task_lines(rows, [path for path in encoders if path != "fp32"])]
    full_sentences = 0
    for task in args.tasks.split(","):
        spec = TASKS[task]
        split_texts = {s for split in ("test", "valid") for pair in load_pairs(spec, split, data_dir)
                       for s in (pair.sentence1, pair.sentence2)}
        full_sentences += len(split_texts)
    estimate = sum(full_sentences / (n_sentences / seconds[path]) for path in encoders)
    note = (f"full grid of these tasks: {full_sentences} distinct sentences per path; at the rates above all "
            f"{len(encoders)} path(s) would take about {estimate / 60:.0f} min of encoding on this machine")
    print(note)
    if args.out is not None:
        import pandas as pd

        args.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out / "cells.csv") as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        summary = "\n".join([f"# Encoding paths judged by Spearman ({args.tasks}; limit {args.limit})", "",
                             *lines, "", note, "", "Provenance:", "", f"- {header}",
                             "- models: " + "; ".join(f"{path} {encoder.name} {encoder.fingerprint[:12]}"
                                                      for path, encoder in encoders.items()),
                             f"- data: {data_dir}; test+valid sha256 " + ", ".join(
                                 f"{task} {data_fingerprint(TASKS[task], ['test', 'valid'], data_dir)}"
                                 for task in args.tasks.split(",")),
                             f"- CPU flags: {' '.join(sorted(flags))}", f"- command: `{command}`",
                             f"- seed: none (no randomness); prefix {args.prefix!r}; platform {platform.platform()}",
                             f"- STSEVAL_ALLOW_EMULATED_BF16={os.environ.get('STSEVAL_ALLOW_EMULATED_BF16', '')}"])
        write_text_atomic(summary + "\n", args.out / "summary.md")
        print(args.out / "summary.md")


if __name__ == "__main__":
    main()
