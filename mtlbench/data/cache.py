"""Build-once cache entries: one builder per key (flock), published by an atomic rename.

Entries are immutable once renamed into place, so readers never lock. Builders take
``<cache_dir>/<key>.lock``; the rename is what guarantees a reader never sees a half-written
entry, even where flock is a no-op (some network file systems): if another process renamed its
entry first, ours is discarded and theirs is used.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from mtlbench.infra.locks import file_lock

T = TypeVar("T")


def temp_prefix(key: str) -> str:
    return f".tmp-{key}-"


@contextmanager
def exclusive(cache_dir: Path, key: str) -> Iterator[None]:
    """Hold an exclusive lock for ``key``."""
    with file_lock(cache_dir / f"{key}.lock"):
        yield


def _discard(path: Path, cache_dir: Path, key: str) -> None:
    # Rename first so no reader can open an entry while it is being deleted.
    doomed = Path(tempfile.mkdtemp(prefix=temp_prefix(key), dir=cache_dir))
    os.rename(path, doomed / "old")
    shutil.rmtree(doomed, ignore_errors=True)


def _remove_leftovers(cache_dir: Path, key: str) -> None:
    # Called under the key's lock: any temp dir for this key belongs to a builder that died.
    for stale in cache_dir.glob(temp_prefix(key) + "*"):
        shutil.rmtree(stale, ignore_errors=True)


def publish(tmp: Path, final: Path) -> bool:
    """Rename ``tmp`` to ``final``; False (and ``tmp`` removed) if ``final`` already exists."""
    try:
        os.rename(tmp, final)
        return True
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return False


def build_once(
    cache_dir: Path, key: str, build: Callable[[Path], None], load: Callable[[Path], T | None]
) -> T:
    """``load(cache_dir/key)``, first building it with ``build(tmp_dir)`` if it is missing.

    ``load`` returns None for a missing or unusable entry; an unusable one is replaced.
    """
    final = cache_dir / key
    loaded = load(final)
    if loaded is not None:
        return loaded
    cache_dir.mkdir(parents=True, exist_ok=True)
    with exclusive(cache_dir, key):
        loaded = load(final)  # another process may have built it while we waited
        if loaded is not None:
            return loaded
        _remove_leftovers(cache_dir, key)
        if final.exists():
            _discard(final, cache_dir, key)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(key), dir=cache_dir))
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; a cache may be shared
            build(tmp)
            publish(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    loaded = load(final)
    if loaded is None:
        raise RuntimeError(f"cache entry {final} is unusable right after it was built")
    return loaded
