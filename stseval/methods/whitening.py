"""BERT-whitening (Su et al. 2021, arXiv:2103.15316): fit, apply, save and load; numpy only.

The fit maps vectors so that their mean is 0 and their covariance the identity, keeping the k
directions of largest variance: x -> (x - mu) @ W[:, :k] with W = U diag(1/sqrt(S)), U S U^T = cov(x).

Su's generalisation (kexue.fm/archives/9079) has two knobs: x -> (x - beta * mu) @ U[:, :k] diag(S)^(-gamma/2).
beta = gamma = 1 is BERT-whitening; beta = gamma = 0 is a pure rotation onto the principal axes (PCA without
centring), which at full k leaves every cosine unchanged; gamma alone rescales, beta alone centres.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stseval.common.errors import StsevalError
from stseval.common.fileio import atomic_path

# eigenvalues below this fraction of the largest are treated as this floor, so that near-singular
# covariances (d > n, or collapsed directions) do not blow the kernel up to inf
RELATIVE_EIGENVALUE_FLOOR = 1e-10


@dataclass
class Whitening:
    """A fitted whitening: apply with `(x - mu) @ kernel`.

    mu: (1, d) float32 mean; kernel: (d, k) float32; provenance: what it was fitted on.
    """

    mu: np.ndarray
    kernel: np.ndarray
    provenance: dict = field(default_factory=dict)
    beta: float = 1.0  # how much of the mean is subtracted (Su's beta); 1 for BERT-whitening
    gamma: float = 1.0  # the power of the eigenvalue rescaling in the kernel (Su's gamma); 1 for BERT-whitening

    @property
    def n_components(self) -> int:
        return int(self.kernel.shape[1])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(n, d) vectors -> (n, k) whitened float32 vectors: (x - beta * mu) @ kernel."""
        return apply_whitening(vectors, np.float32(self.beta) * self.mu, self.kernel)

    def truncate(self, n_components: int) -> Whitening:
        """The same whitening keeping only its first n_components directions."""
        return Whitening(self.mu, self.kernel[:, :n_components], dict(self.provenance, n_components=n_components),
                         self.beta, self.gamma)


CHUNK_ROWS = 65536
"""Rows converted to float64 at a time: 65536 x 384 x 8 bytes = 200 MB, the fit's working memory."""

VectorSource = np.ndarray | str | Path | Iterable[np.ndarray]
"""What a fit reads: an (n, d) array (a memory-mapped one too), a .npy path, or (m, d) chunks."""


@dataclass(frozen=True)
class WhiteningBasis:
    """What every (beta, gamma, k) whitening of one set of vectors shares: one eigendecomposition.

    mu: (1, d) float32 mean; axes: (d, d) float64 eigenvectors of the covariance as columns, by
    decreasing eigenvalue; eigenvalues: (d,) float64, floored at RELATIVE_EIGENVALUE_FLOOR x the largest;
    n_fit: vectors fitted; rank: directions with variance above the floor (at most n_fit - 1).
    """

    mu: np.ndarray
    axes: np.ndarray
    eigenvalues: np.ndarray
    n_fit: int
    rank: int

    def whitening(self, beta: float = 1.0, gamma: float = 1.0, n_components: int | None = None,
                  provenance: dict | None = None) -> Whitening:
        """x -> (x - beta * mu) @ axes[:, :k] diag(eigenvalues[:k])^(-gamma/2), as a Whitening."""
        dim = self.axes.shape[0]
        k = dim if n_components is None else n_components
        if not 1 <= k <= dim:
            raise StsevalError(f"--dims: {k} is outside 1..{dim} (the vector size)")
        kernel = self.axes[:, :k] * self.eigenvalues[:k] ** (-gamma / 2)
        return Whitening(self.mu, kernel.astype(np.float32), dict(provenance or {}), float(beta), float(gamma))


def fit_whitening_basis(vectors: VectorSource, chunk_rows: int = CHUNK_ROWS) -> WhiteningBasis:
    """The mean and eigendecomposition of the covariance of (n, d) vectors, streamed like `fit_whitening`."""
    n_rows, mean, covariance = mean_and_covariance(vectors, chunk_rows)
    u, s, _ = np.linalg.svd(covariance)  # symmetric PSD: singular values are the eigenvalues, sorted
    floor = s[0] * RELATIVE_EIGENVALUE_FLOOR
    rank = min(int(np.count_nonzero(s > floor * 1.01)), n_rows - 1)  # n vectors span n - 1 directions
    return WhiteningBasis(mean.astype(np.float32), u, np.maximum(s, floor), n_rows, rank)


def fit_whitening(
    vectors: VectorSource, n_components: int | None = None, chunk_rows: int = CHUNK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Fit BERT-whitening on sentence vectors, streaming: memory is O(chunk_rows x d + d^2), not O(n x d).

    Args:
        vectors: (n, d) sentence vectors, e.g. every sentence of one task: an array, a memory-mapped
            array, the path of a .npy file (memory-mapped here), or an iterable of (m_i, d) chunks
            (cache shards, a generator); nothing is copied whole.
        n_components: keep the first k directions (largest variance); None keeps all d.
        chunk_rows: rows of an array converted to float64 at a time.
    Returns:
        mu: (1, d) float32 mean and kernel: (d, k) float32; apply with `(x - mu) @ kernel`.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(100, 8))
        >>> mu, kernel = fit_whitening(x, 4); ((x - mu) @ kernel).shape
        (100, 4)
        >>> mu2, kernel2 = fit_whitening(iter([x[:30], x[30:]]), 4)   # same fit from chunks
    """
    basis = fit_whitening_basis(vectors, chunk_rows)
    whitening = basis.whitening(1.0, 1.0, n_components)  # each direction scaled so the covariance is I
    return whitening.mu, whitening.kernel


def mean_and_covariance(vectors: VectorSource, chunk_rows: int = CHUNK_ROWS) -> tuple[int, np.ndarray, np.ndarray]:
    """n, the (1, d) float64 mean and the (d, d) float64 unbiased covariance, accumulated chunk by chunk.

    Sums are taken around the first chunk's mean (a shift), so that subtracting n * mean^2 at the
    end cancels no large numbers: vectors far from the origin lose no precision.
    Raises StsevalError when there are fewer than 2 vectors or the chunks disagree in d.
    """
    n_rows = 0
    shift = total = gram = np.zeros((0, 0))  # set from the first non-empty chunk
    for chunk in _chunks(vectors, chunk_rows):
        if len(chunk) == 0:
            continue
        centred = np.array(chunk, dtype=np.float64)  # a float64 copy, so small eigenvalues survive
        if n_rows == 0:
            shift = centred.mean(axis=0, keepdims=True)
            total, gram = np.zeros((1, centred.shape[1])), np.zeros((centred.shape[1], centred.shape[1]))
        elif centred.shape[1] != shift.shape[1]:
            raise StsevalError(f"whitening got {shift.shape[1]}-d and {centred.shape[1]}-d vectors in one fit")
        centred -= shift  # in place: one float64 chunk is all the fit holds besides d x d
        total += centred.sum(axis=0, keepdims=True)
        gram += centred.T @ centred
        n_rows += len(chunk)
    if n_rows < 2:
        raise StsevalError(f"whitening needs at least 2 vectors of shape (n, d), got {n_rows}")
    offset = total / n_rows  # mean of the shifted vectors
    covariance = (gram - n_rows * offset.T @ offset) / (n_rows - 1)
    return n_rows, shift + offset, (covariance + covariance.T) / 2  # exactly symmetric


def _chunks(vectors: VectorSource, chunk_rows: int) -> Iterator[np.ndarray]:
    """(m, d) pieces of `vectors`, at most chunk_rows rows each when it is one array or a .npy file."""
    source: np.ndarray | Iterable[np.ndarray]
    if isinstance(vectors, (str, Path)):
        try:
            source = np.load(vectors, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise StsevalError(f"{vectors}: not a .npy array of vectors ({err})") from None
    else:
        source = vectors
    if isinstance(source, (list, tuple)) and not all(
            isinstance(part, np.ndarray) and part.ndim == 2 for part in source):
        source = np.asarray(source)  # nested lists of numbers: one (n, d) array, as np.asarray reads it
    if isinstance(source, np.ndarray):
        if source.ndim != 2:
            raise StsevalError(f"whitening needs vectors of shape (n, d), got {source.shape}")
        for start in range(0, len(source), chunk_rows):
            yield source[start : start + chunk_rows]  # a view: a memory map is read one chunk at a time
        return
    for chunk in source:
        yield from _chunks(np.asarray(chunk), chunk_rows)


def apply_whitening(vectors: np.ndarray, mu: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Whiten vectors with a fitted (mu, kernel).

    Args:
        vectors: (n, d) vectors; mu: (1, d); kernel: (d, k).
    Returns:
        (n, k) float32 whitened vectors (not normalised: cosine scoring normalises).
    """
    if vectors.shape[1] != mu.shape[1]:
        raise StsevalError(f"whitening was fitted on {mu.shape[1]}-d vectors but got {vectors.shape[1]}-d vectors")
    return ((np.asarray(vectors, dtype=np.float32) - mu) @ kernel).astype(np.float32)


def save_whitening(whitening: Whitening, path: Path) -> None:
    """Save as a small .npz (mu, kernel, beta, gamma, provenance as JSON), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a handle: np.savez would append ".npz" to a name
        np.savez(handle, mu=whitening.mu, kernel=whitening.kernel, beta=np.float64(whitening.beta),
                 gamma=np.float64(whitening.gamma),
                 provenance=np.array(json.dumps(whitening.provenance, sort_keys=True)))


def load_whitening(path: Path) -> Whitening:
    """Load a whitening saved by `save_whitening`; raises StsevalError naming the file if it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            mu, kernel = archive["mu"], archive["kernel"]
            provenance = json.loads(str(archive["provenance"]))
            # files from before beta/gamma whitening hold plain BERT-whitening
            beta = float(archive["beta"]) if "beta" in archive.files else 1.0
            gamma = float(archive["gamma"]) if "gamma" in archive.files else 1.0
    except (OSError, KeyError, ValueError) as err:
        raise StsevalError(f"{path}: not a stseval whitening file ({err})") from None
    if mu.ndim != 2 or kernel.ndim != 2 or mu.shape[1] != kernel.shape[0]:
        raise StsevalError(f"{path}: inconsistent shapes mu {mu.shape}, kernel {kernel.shape}")
    return Whitening(mu, kernel, provenance, beta, gamma)
