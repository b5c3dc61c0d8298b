"""How long a bad option takes to fail: each invocation in a fresh `python -m stseval.cli` process.

Target: under 2 s for every option error on the project's 2-core machine. For scale, the same run
times `import torch` alone, which every one of these paid before the options were checked first.
The data folder is the usual one (tasks.resolve_data_dir); a tiny BERT built on the spot stands in
for a local model whose config.json gives the vector size.

    .venv/bin/python benchmarks/cli_errors.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 2.0


def invocations(model_dir: Path) -> list[list[str]]:
    return [
        ["whiten", "--bogus"],
        ["simcse-train", "--then-whiten", "true"],
        ["whiten", "--pooling", "bogus"],
        ["whiten", "--tasks", "STBS"],
        ["whiten", "--fit-on", "nofile.txt"],
        ["whiten", "--split", "nosuch", "--tasks", "STS-B"],
        ["whiten", "--model", str(model_dir), "--dims", "full,9999", "--tasks", "STS-B"],
        ["simcse-train", "--dropout", "2"],
        ["simcse-train", "--loss", "bogus"],
        ["simcse-train", "--tasks", "FOO"],
        ["index", "sweep", "--methods", "bogus"],
        ["index", "sweep", "--model", str(model_dir), "--dims", "9999"],
        ["index", "build", "--index-dir", "runs/x"],
        ["index", "search", "--index-dir", "no-such-index", "query"],
        ["report", "no-such-file.csv"],
        ["tasks", "--data-dir", "/no/such/folder"],
    ]


def seconds(command: list[str]) -> tuple[float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    return time.perf_counter() - started, done.returncode, (done.stderr.strip().splitlines() or [""])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per invocation; the median is shown")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import make_bert  # noqa: E402 - the tests' tiny model builder

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_bert(Path(tmp) / "tiny-bert")
        torch_s = statistics.median(seconds([sys.executable, "-c", "import torch"])[0] for _ in range(args.repeats))
        print(f"import torch alone: {torch_s:.2f} s (median of {args.repeats})")
        print(f"{'seconds':>7s} {'x torch':>7s}  rc  invocation -> message")
        worst = 0.0
        for invocation in invocations(model_dir):
            runs = [seconds([sys.executable, "-m", "stseval.cli", *invocation]) for _ in range(args.repeats)]
            median = statistics.median(run[0] for run in runs)
            worst = max(worst, median)
            shown = " ".join(invocation).replace(str(model_dir), "TINY_BERT")
            print(f"{median:7.2f} {median / torch_s:7.2f}  {runs[0][1]:2d}  stseval {shown} -> {runs[0][2][:90]}")
        verdict = "within" if worst < TARGET_S else "OVER"
        print(f"slowest: {worst:.2f} s, {verdict} the {TARGET_S:.0f} s target")


if __name__ == "__main__":
    main()
