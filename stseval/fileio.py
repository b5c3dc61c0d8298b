"""Atomic writes and file checksums shared by every module that writes results, caches or models."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, as `sha256sum` prints it; read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; once the block succeeds it replaces `path` in one rename.

    Readers see the old file or the new one, never half of one; a failed block leaves no temp file.

    Example:
        >>> with atomic_path(Path("grid.png")) as tmp:
        ...     figure.savefig(tmp, format="png")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # same folder, so os.replace is an atomic rename; pid + random part so concurrent writers don't collide
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(data: bytes, path: Path) -> str:
    """Write bytes atomically and return their sha256."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def write_text_atomic(text: str, path: Path) -> None:
    """Write UTF-8 text atomically (markdown, JSON, model cards)."""
    write_bytes_atomic(text.encode("utf-8"), path)
