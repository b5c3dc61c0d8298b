"""Streaming whitening fit vs the BLAS limit vs scikit-learn IncrementalPCA, time and peak RSS.

For each n (default 1e6 and 1e7) of d = 384 float32 vectors read from one memory-mapped .npy:

- stseval: `stseval.methods.whitening.fit_whitening(memmap[:n])` (float64 sums over 65,536-row chunks);
- limit:   one float64 Gram matrix X^T X over the same rows + `numpy.linalg.eigh`, nothing else
           (rows converted to float64 --limit-block rows at a time, default the same 65,536 as stseval:
           one 1,000,000-row block took 37 s against 4.8 s for 65,536-row blocks at n = 1e6 here);
- ipca:    `sklearn.decomposition.IncrementalPCA(whiten=True, copy=False)` with its default batch.

Each fit runs in a fresh child process, which reports its wall time, peak RSS (VmHWM: resident
pages of the memory map count, so "above map" = peak RSS - map size) and fit_anon, the growth of
its anonymous memory during the fit (RssAnon sampled every 20 ms: the fit's own memory, which the
page cache cannot give back).
With --repeats R the methods alternate R times and the ratios use each one's fastest fit
(this machine is shared, so its load is printed on every line). The parent checks that stseval's
whitening equals the limit's (same whitened cosines on 2,000 rows) before printing ratios. The
vectors are synthetic but shaped like sentence embeddings: a shared offset, a decaying spectrum, and
a low-rank correlated part.

Run:  .venv/bin/python benchmarks/whitening.py [--n 1000000,10000000] [--threads 2] [--scratch /tmp]
      .venv/bin/python benchmarks/whitening.py --real-task STS-B   (only the real-task Spearman check)
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
LIMIT_BLOCK_ROWS = 65_536
WRITE_BLOCK_ROWS = 1_000_000


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
    parser.add_argument("--repeats", type=int, default=1, help="fits per method (alternating); ratios use the fastest")
    parser.add_argument("--limit-block", type=int, default=LIMIT_BLOCK_ROWS, help="rows per float64 block of the limit")
    parser.add_argument("--vectors", type=Path, default=None,
                        help="an existing (n_max, dim) float32 .npy to read instead of writing (and deleting) one")
    parser.add_argument("--real-task", default=None,
                        help="also check on a real task (e.g. STS-B): encode its test split with the default model, "
                             "then compare the streamed fit's Spearman with the old whole-array fit's")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "chinese-sts")
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
    for start in range(0, n, WRITE_BLOCK_ROWS):
        rows = min(WRITE_BLOCK_ROWS, n - start)
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


def rss_anon_bytes() -> int:
    """This process's resident anonymous memory now (RssAnon: not counting memory-mapped file pages)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


class AnonPeak:
    """Samples RssAnon every 20 ms in a thread; .peak is the largest value seen."""

    def __init__(self) -> None:
        import threading

        self.peak, self._stop = rss_anon_bytes(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_anon_bytes())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_anon_bytes())


def child(method: str, path: Path, n: int, out: Path, limit_block: int) -> None:
    """Fit once with `method` on the first n rows of the memory map; save mu, kernel and the figures."""
    sys.path.insert(0, str(REPO_ROOT))
    from sklearn.decomposition import IncrementalPCA

    from stseval.methods.whitening import fit_whitening

    vectors = np.load(path, mmap_mode="r")[:n]
    rss_before, anon_before = peak_rss_bytes(), rss_anon_bytes()
    anon = AnonPeak()
    started = time.perf_counter()
    if method == "stseval":
        mu, kernel = fit_whitening(vectors)
    elif method == "limit":
        gram, total = np.zeros((vectors.shape[1],) * 2), np.zeros(vectors.shape[1])
        for start in range(0, n, limit_block):
            block = np.asarray(vectors[start : start + limit_block], dtype=np.float64)
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
    figures = {"seconds": seconds, "peak_rss": peak_rss_bytes(), "rss_before": rss_before,
               "anon_growth": anon.stop() - anon_before}
    np.savez(out, mu=mu, kernel=kernel, figures=np.array(json.dumps(figures)))


def run_child(method: str, path: Path, n: int, threads: int, scratch: Path,
              limit_block: int) -> tuple[dict, np.ndarray, np.ndarray]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    out = scratch / f"stseval-bench-whitening-{method}-{n}.npz"
    subprocess.run([sys.executable, __file__, "--child", method, "--path", str(path), "--n", str(n), "--out", str(out),
                    "--limit-block", str(limit_block)],
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


def real_task_check(task: str, data_dir: Path) -> None:
    """Spearman on a real task's test split: streamed fit (1,000-row chunks) vs the old whole-array fit."""
    sys.path.insert(0, str(REPO_ROOT))
    from stseval.data.tasks import TASKS
    from stseval.encoders.cache import EmbeddingCache
    from stseval.encoders.encoder import load_encoder
    from stseval.evaluation.scoring import encode_splits, score_pairs
    from stseval.methods.whitening import apply_whitening, fit_whitening

    encoded = encode_splits(load_encoder("default"), TASKS[task], ["test"], ["last-avg"], data_dir,
                            prefix="query: ", cache=EmbeddingCache(), show_progress=False)["test"]
    a, b, vectors = encoded.vectors_a["last-avg"], encoded.vectors_b["last-avg"], encoded.all_vectors("last-avg")
    x = vectors.astype(np.float64)  # the fit as it was before streaming: np.cov of the whole array + SVD
    old_mu = x.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(np.cov((x - old_mu).T))
    old_kernel = u / np.sqrt(np.maximum(s, s[0] * 1e-10))
    chunks = (vectors[start : start + 1000] for start in range(0, len(vectors), 1000))
    mu, kernel = fit_whitening(chunks)
    for dims in (None, 128):
        old = score_pairs(apply_whitening(a, old_mu.astype(np.float32), old_kernel[:, :dims].astype(np.float32)),
                          apply_whitening(b, old_mu.astype(np.float32), old_kernel[:, :dims].astype(np.float32)),
                          encoded.gold_scores, n_resamples=0).spearman
        new = score_pairs(apply_whitening(a, mu, kernel[:, :dims]), apply_whitening(b, mu, kernel[:, :dims]),
                          encoded.gold_scores, n_resamples=0).spearman
        print(f"real task {task} test, default model, last-avg, query: prefix, fit on test ({len(vectors)} vectors), "
              f"dims={dims or 'full'}: old fit {old:.8f} streamed {new:.8f} |delta|={abs(new - old):.2e}")


def main() -> None:
    args = parse_args()
    if args.child:
        return child(args.child, args.path, int(args.n), args.out, args.limit_block)
    if args.real_task:
        return real_task_check(args.real_task, args.data_dir)
    sizes = [int(float(part)) for part in args.n.split(",")]
    methods = args.methods.split(",")
    n_max, map_bytes = max(sizes), max(sizes) * args.dim * 4
    free = shutil.disk_usage(args.scratch).free
    print(f"machine: {platform.node()} {platform.machine()} cpus={os.cpu_count()} python={platform.python_version()} "
          f"numpy={np.__version__} threads={args.threads} dim={args.dim} scratch={args.scratch} "
          f"free={free / 1e9:.1f} GB load={os.getloadavg()[0]:.1f}")
    given = args.vectors is not None
    path = args.vectors if given else args.scratch / f"stseval-bench-whitening-{os.getpid()}.npy"
    if given:
        shape = np.load(path, mmap_mode="r").shape
        if shape[0] < n_max or shape[1] != args.dim:
            sys.exit(f"--vectors {path}: shape {shape}, need at least ({n_max}, {args.dim})")
    elif free < map_bytes + (1 << 30):
        sys.exit(f"scratch {args.scratch}: {free / 1e9:.1f} GB free, the map needs {map_bytes / 1e9:.1f} GB; "
                 "use --scratch elsewhere or a smaller --n")
    try:
        if not given:
            started = time.perf_counter()
            write_vectors(path, n_max, args.dim, args.seed)
            print(f"wrote {path} ({n_max} x {args.dim} float32, {map_bytes / 1e9:.1f} GB) in "
                  f"{time.perf_counter() - started:.0f} s")
        for n in sizes:
            sample = np.asarray(np.load(path, mmap_mode="r")[:2000], dtype=np.float32)
            results = {}
            for _ in range(args.repeats):  # methods alternate, so a change in machine load hits each
                for method in methods:
                    if method == "ipca" and n > args.ipca_max_n:
                        continue
                    figures, mu, kernel = run_child(method, path, n, args.threads, args.scratch, args.limit_block)
                    figures["cosines"] = whitened_cosines(sample, mu, kernel)
                    above = (figures["peak_rss"] - n * args.dim * 4) / 1e9
                    print(f"n={n:>9,d} {method:8s} load={os.getloadavg()[0]:4.1f} time={figures['seconds']:8.2f} s  "
                          f"peak_rss={figures['peak_rss'] / 1e9:6.2f} GB  above_map={above:+6.2f} GB  "
                          f"fit_anon={figures['anon_growth'] / 1e9:5.2f} GB  (map {n * args.dim * 4 / 1e9:.2f} GB, "
                          f"rss after imports {figures['rss_before'] / 1e9:.2f} GB)", flush=True)
                    if method not in results or figures["seconds"] < results[method]["seconds"]:
                        results[method] = figures  # the best of the repeats
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
        if not given:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
