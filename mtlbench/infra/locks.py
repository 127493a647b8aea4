"""One inter-process lock: an exclusive ``flock`` on a sidecar lock file.

Used wherever two processes may create the same thing at once: a decoded-image cache entry, an
MLflow SQLite store, an Optuna SQLite storage. Lock files stay after use (deleting them would
race with a process about to lock them). Where ``fcntl`` does not exist (not POSIX) the lock is a
no-op; the callers' atomic renames and "create the study before any worker" still hold there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - POSIX only in CI
    fcntl = None  # type: ignore[assignment]


@contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created, with its folder, if missing)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sidecar(path: Path) -> Path:
    """The lock file guarding ``path``: ``<path>.lock`` beside it."""
    return path.with_name(path.name + ".lock")
