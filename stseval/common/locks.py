"""An exclusive lock file that is removed again on release, so no `.NAME.lock` stays beside a results file.

Removing a lock file is safe only when every taker checks, once it holds the lock, that the path still
names the file it locked: a process that waited on the old file then finds it unlinked (or replaced by a
newer taker's file) and locks the path again. So the holder unlinks the path while it still holds the
lock; whoever opens the path afterwards creates a new file, and at most one process holds the lock on
the file the path names at any time. On systems without `fcntl` (Windows) the filelock package is used
and its lock file stays.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class LockTimeout(TimeoutError):
    """The lock was still held by another process when the timeout ran out."""


@contextmanager
def removable_lock(path: Path, timeout_s: float, poll_s: float = 0.05) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block; the lock file is gone afterwards.

    Args:
        path: the lock file, created if missing (its folder must exist).
        timeout_s: wait at most this long for another holder.
        poll_s: delay between attempts while another process holds it.
    Raises:
        LockTimeout when another process holds the lock for longer than timeout_s.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        from filelock import FileLock, Timeout

        try:
            with FileLock(str(path), timeout=timeout_s):
                yield
        except Timeout:
            raise LockTimeout(str(path)) from None
        return
    path = Path(path)
    deadline = time.monotonic() + timeout_s
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(str(path)) from None
                    time.sleep(poll_s)
            try:
                named = os.stat(path)
            except FileNotFoundError:
                named = None
        except BaseException:
            os.close(fd)
            raise
        if named is not None and os.path.samestat(named, os.fstat(fd)):
            break  # we hold the lock on the file the path names
        os.close(fd)  # the previous holder removed it after we opened it: lock the path's current file
    try:
        yield
    finally:
        # unlink while still holding the lock: a process waiting on this file sees it gone and retries
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
