"""Streaming whitening fit vs the BLAS limit vs scikit-learn IncrementalPCA, time and peak RSS.

For each n (default 1e6 and 1e7) of d = 384 float32 vectors read from one memory-mapped .npy:

- stseval: `stseval.whitening.fit_whitening(memmap[:n])` (float64 sums over 65,536-row chunks);
- limit:   one float64 Gram matrix X^T X over the same rows + `numpy.linalg.eigh`, nothing else
           (rows converted to float64 1,000,000 at a time, so n = 1e7 fits in RAM);
- ipca:    `sklearn.decomposition.IncrementalPCA(whiten=True, copy=False)` with its default batch.

Each fit runs in a fresh child process, which reports its wall time and peak RSS (VmHWM; resident
pages of the memory map count, so "above map" = peak RSS - map size is the fit's own memory).
The parent checks that stseval's whitening equals the limit's (same whitened cosines on 2,000
rows) before printing ratios. The vectors are synthetic but shaped like sentence embeddings: a
shared offset, a decaying spectrum, and a low-rank correlated part.

Run:  .venv/bin/python benchmarks/whitening.py [--n 1000000,10000000] [--threads 2] [--scratch /tmp]
      The scratch file (n_max x 384 x 4 bytes: 15.4 GB at 1e7) is deleted at the end; the script
      refuses to start when the scratch disk has less free space than that plus 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
METHODS = ("stseval", "limit", "ipca")
LIMIT_BLOCK_ROWS = 1_000_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="1000000,10000000", help="comma-separated vector counts")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2, help="BLAS threads in every child")
    parser.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--ipca-max-n", type=int, default=1_000_000,
                        help="skip IncrementalPCA above this n (about 15 min per 1e6 rows here)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def write_vectors(path: Path, n: int, dim: int, seed: int) -> None:
    """(n, dim) float32 embedding-like vectors into a .npy, 1e6 rows at a time."""
    rng = np.random.default_rng(seed)
    scales = (1.0 / np.sqrt(np.arange(1, dim + 1))).astype(np.float32)  # decaying spectrum
    mixing = (0.3 * rng.normal(size=(16, dim))).astype(np.float32)        # a correlated low-rank part
    offset = rng.normal(size=dim).astype(np.float32)                      # shared mean (anisotropy)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, LIMIT_BLOCK_ROWS):
        rows = min(LIMIT_BLOCK_ROWS, n - start)
        z = rng.standard_normal(size=(rows, dim), dtype=np.float32)
        out[start : start + rows] = z * scales + z[:, :16] @ mixing + offset
    out.flush()
    del out


def peak_rss_bytes() -> int:
    """This process's peak resident set (VmHWM), bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(method: str, path: Path, n: int, out: Path) -> None:
    """Fit once with `method` on the first n rows of the memory map; save mu, kernel and the figures."""
    sys.path.insert(0, str(REPO_ROOT))
    from sklearn.decomposition import IncrementalPCA

    from stseval.whitening import fit_whitening

    vectors = np.load(path, mmap_mode="r")[:n]
    rss_before = peak_rss_bytes()
    started = time.perf_counter()
    if method == "stseval":
        mu, kernel = fit_whitening(vectors)
    elif method == "limit":
        gram, total = np.zeros((vectors.shape[1],) * 2), np.zeros(vectors.shape[1])
        for start in range(0, n, LIMIT_BLOCK_ROWS):
            block = np.asarray(vectors[start : start + LIMIT_BLOCK_ROWS], dtype=np.float64)
            gram += block.T @ block
            total += block.sum(axis=0)
            del block
        mean = total / n
        s, u = np.linalg.eigh((gram - n * np.outer(mean, mean)) / (n - 1))
        s, u = s[::-1], u[:, ::-1]
        mu, kernel = mean[None, :].astype(np.float32), (u / np.sqrt(np.maximum(s, s[0] * 1e-10))).astype(np.float32)
    else:
        pca = IncrementalPCA(n_components=vectors.shape[1], whiten=True, copy=False).fit(vectors)
        mu = pca.mean_[None, :].astype(np.float32)
        kernel = (pca.components_.T / np.sqrt(pca.explained_variance_)).astype(np.float32)
    seconds = time.perf_counter() - started
    np.savez(out, mu=mu, kernel=kernel,
             figures=np.array(json.dumps({"seconds": seconds, "peak_rss": peak_rss_bytes(), "rss_before": rss_before})))


def run_child(method: str, path: Path, n: int, threads: int, scratch: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    out = scratch / f"stseval-bench-whitening-{method}-{n}.npz"
    subprocess.run([sys.executable, __file__, "--child", method, "--path", str(path), "--n", str(n), "--out", str(out)],
                   check=True, env=env)
    with np.load(out) as archive:
        figures = json.loads(str(archive["figures"]))
        mu, kernel = archive["mu"], archive["kernel"]
    out.unlink()
    return figures, mu, kernel


def whitened_cosines(rows: np.ndarray, mu: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Cosines between consecutive whitened rows: what scoring sees, independent of axis signs."""
    w = (rows - mu) @ kernel
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    return (w[0::2] * w[1::2]).sum(axis=1)


def main() -> None:
    args = parse_args()
    if args.child:
        return child(args.child, args.path, int(args.n), args.out)
    sizes = [int(float(part)) for part in args.n.split(",")]
    methods = args.methods.split(",")
    n_max, map_bytes = max(sizes), max(sizes) * args.dim * 4
    free = shutil.disk_usage(args.scratch).free
    print(f"machine: {platform.node()} {platform.machine()} cpus={os.cpu_count()} python={platform.python_version()} "
          f"numpy={np.__version__} threads={args.threads} dim={args.dim} scratch={args.scratch} "
          f"free={free / 1e9:.1f} GB")
    if free < map_bytes + (1 << 30):
        sys.exit(f"scratch {args.scratch}: {free / 1e9:.1f} GB free, the map needs {map_bytes / 1e9:.1f} GB; "
                 "use --scratch elsewhere or a smaller --n")
    path = args.scratch / f"stseval-bench-whitening-{os.getpid()}.npy"
    try:
        started = time.perf_counter()
        write_vectors(path, n_max, args.dim, args.seed)
        print(f"wrote {path} ({n_max} x {args.dim} float32, {map_bytes / 1e9:.1f} GB) in {time.perf_counter() - started:.0f} s")
        for n in sizes:
            sample = np.asarray(np.load(path, mmap_mode="r")[:2000], dtype=np.float32)
            results = {}
            for method in methods:
                if method == "ipca" and n > args.ipca_max_n:
                    continue
                figures, mu, kernel = run_child(method, path, n, args.threads, args.scratch)
                results[method] = figures
                figures["cosines"] = whitened_cosines(sample, mu, kernel)
                above = (figures["peak_rss"] - n * args.dim * 4) / 1e9
                print(f"n={n:>9,d} {method:8s} time={figures['seconds']:8.2f} s  peak_rss={figures['peak_rss'] / 1e9:6.2f} GB  "
                      f"above_map={above:+6.2f} GB  (map {n * args.dim * 4 / 1e9:.2f} GB, rss after imports "
                      f"{figures['rss_before'] / 1e9:.2f} GB)", flush=True)
            if "stseval" in results and "limit" in results:
                ours, limit = results["stseval"], results["limit"]
                print(f"n={n:>9,d} check stseval vs limit whitened cosines: max|diff|="
                      f"{np.abs(ours['cosines'] - limit['cosines']).max():.2e}")
                print(f"n={n:>9,d} ratio stseval/limit time={ours['seconds'] / limit['seconds']:.2f}x "
                      f"rss={ours['peak_rss'] / limit['peak_rss']:.2f}x")
                if "ipca" in results:
                    peer = results["ipca"]
                    print(f"n={n:>9,d} ratio ipca/stseval time={peer['seconds'] / ours['seconds']:.2f}x "
                          f"rss={peer['peak_rss'] / ours['peak_rss']:.2f}x  check ipca vs limit cosines: max|diff|="
                          f"{np.abs(peer['cosines'] - limit['cosines']).max():.2e}")
    finally:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
