"""Atomic writes and file checksums shared by every module that writes results, caches or models."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stseval.common.errors import StsevalError


class WriteError(StsevalError, OSError):
    """A file that could not be written (disk full, read-only, no permission): one line naming it.

    Also an OSError, so code for which a write is optional (a checksum memo) still passes over it.
    """


def write_error(path: Path, err: OSError) -> WriteError:
    """The one-line error for `err` raised while writing `path`: which file, why, and that nothing was lost."""
    reason = "no space left on the device" if err.errno == errno.ENOSPC else (err.strerror or str(err))
    error = WriteError(f"{path}: cannot write it ({reason}); it and every file written before are as they were "
                       "(writes are atomic, so nothing is half-written): free some space or choose another "
                       "folder, then run the same command again to resume")
    error.errno = err.errno
    return error


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, as `sha256sum` prints it; read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; once the block succeeds it replaces `path` in one rename.

    Readers see the old file or the new one, never half of one; a failed block leaves no temp file.
    An OSError while writing (a full disk: errno 28) becomes a `WriteError` naming `path`.

    Example:
        >>> with atomic_path(Path("grid.png")) as tmp:
        ...     figure.savefig(tmp, format="png")
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a new folder needs space too
        raise write_error(path, err) from None
    # same folder, so os.replace is an atomic rename; pid + random part so concurrent writers don't collide
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as err:  # the old file (if any) is untouched: only the temp file was being written
        raise write_error(path, err) from None
    finally:
        with contextlib.suppress(OSError):  # cleanup must never hide the error that brought us here
            tmp.unlink(missing_ok=True)


def check_writable_dir(folder: Path, option: str, fix: str = "choose another folder or fix its permissions") -> None:
    """Fail early, in one line, when `folder` cannot be created or written into; change nothing on disk.

    Commands call this before their work, so an unwritable `--out` is found in a second, not after an
    hour of encoding. A missing folder counts as writable when its nearest existing parent is.

    Args:
        folder: the folder a command will write into (created later by the writer).
        option: what named it in the message: "--out", "--index-dir", "STSEVAL_HOME", ...
        fix: the way out to suggest.
    Raises:
        StsevalError naming `option` and `folder` when a part of the path is a file, or the nearest
        existing folder does not take a new file (read-only, no permission, no space).
    """
    folder = Path(folder).expanduser()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == folder else f"is under {existing}, which is a file"
        raise StsevalError(f"{option} {folder}: {where}, not a folder; give a folder path")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".stseval-write-check-") as handle:
            # a real file, not os.access: it also sees read-only mounts; one byte (an empty file needs no
            # space) also sees a disk that is already full
            handle.write(b"\0")
            handle.flush()
    except OSError as err:
        raise StsevalError(f"{option} {folder}: cannot write into {existing} ({err.strerror or err}); {fix}") from None


def write_bytes_atomic(data: bytes, path: Path) -> str:
    """Write bytes atomically and return their sha256."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def write_text_atomic(text: str, path: Path) -> None:
    """Write UTF-8 text atomically (markdown, JSON, model cards)."""
    write_bytes_atomic(text.encode("utf-8"), path)
