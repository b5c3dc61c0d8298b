"""BERT-whitening (Su et al. 2021, arXiv:2103.15316): fit, apply, save and load; numpy only.

The fit maps vectors so that their mean is 0 and their covariance the identity, keeping the k
directions of largest variance: x -> (x - mu) @ W[:, :k] with W = U diag(1/sqrt(S)), U S U^T = cov(x).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stseval.errors import StsevalError
from stseval.fileio import atomic_path

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

    @property
    def n_components(self) -> int:
        return int(self.kernel.shape[1])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """(n, d) vectors -> (n, k) whitened float32 vectors."""
        return apply_whitening(vectors, self.mu, self.kernel)

    def truncate(self, n_components: int) -> "Whitening":
        """The same whitening keeping only its first n_components directions."""
        return Whitening(self.mu, self.kernel[:, :n_components], dict(self.provenance, n_components=n_components))


def fit_whitening(vectors: np.ndarray, n_components: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fit BERT-whitening on sentence vectors.

    Args:
        vectors: (n, d) sentence vectors, e.g. every sentence of one task.
        n_components: keep the first k directions (largest variance); None keeps all d.
    Returns:
        mu: (1, d) float32 mean and kernel: (d, k) float32; apply with `(x - mu) @ kernel`.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(100, 8))
        >>> mu, kernel = fit_whitening(x, 4); ((x - mu) @ kernel).shape
        (100, 4)
    """
    vectors = np.asarray(vectors, dtype=np.float64)  # float64 so small eigenvalues survive
    if vectors.ndim != 2 or vectors.shape[0] < 2:
        raise StsevalError(f"whitening needs at least 2 vectors of shape (n, d), got {vectors.shape}")
    dim = vectors.shape[1]
    if n_components is not None and not 1 <= n_components <= dim:
        raise StsevalError(f"--dims: {n_components} is outside 1..{dim} (the vector size)")
    mu = vectors.mean(axis=0, keepdims=True)
    covariance = np.cov((vectors - mu).T)
    u, s, _ = np.linalg.svd(covariance)  # symmetric PSD: singular values are the eigenvalues, sorted
    s = np.maximum(s, s[0] * RELATIVE_EIGENVALUE_FLOOR)
    kernel = u / np.sqrt(s)  # each direction scaled so that the whitened covariance is I
    return mu.astype(np.float32), kernel[:, :n_components].astype(np.float32)


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
    """Save as a small .npz (mu, kernel, provenance as JSON), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a handle: np.savez would append ".npz" to a name
        np.savez(handle, mu=whitening.mu, kernel=whitening.kernel,
                 provenance=np.array(json.dumps(whitening.provenance, sort_keys=True)))


def load_whitening(path: Path) -> Whitening:
    """Load a whitening saved by `save_whitening`; raises StsevalError naming the file if it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            mu, kernel = archive["mu"], archive["kernel"]
            provenance = json.loads(str(archive["provenance"]))
    except (OSError, KeyError, ValueError) as err:
        raise StsevalError(f"{path}: not a stseval whitening file ({err})") from None
    if mu.ndim != 2 or kernel.ndim != 2 or mu.shape[1] != kernel.shape[0]:
        raise StsevalError(f"{path}: inconsistent shapes mu {mu.shape}, kernel {kernel.shape}")
    return Whitening(mu, kernel, provenance)
