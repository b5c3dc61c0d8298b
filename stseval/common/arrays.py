"""Row-wise vector helpers shared by the layers that handle vectors (methods' FAISS indexes, evaluation's
cosine scores, the public API's similarity): pure numpy, no I/O."""

from __future__ import annotations

import numpy as np


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length.

    Args:
        vectors: (n, d) float vectors.
    Returns:
        (n, d) float32; all-zero rows stay zero instead of becoming NaN.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
