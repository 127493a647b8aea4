"""On-disk format of one decoded dataset: images.npy, labels.npy, meta.json, skipped.tsv."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtlbench.data.errors import Skipped

# Bump when the decoded pixels or the layout change (decoder, filter, crop, files): old entries
# then live under other keys and are never read.
CACHE_VERSION = 1
FORMAT = "mtlbench-decoded-utkface"
SKIPPED_TSV = "skipped.tsv"


def entry_key(content_sha256: str, image_size: int) -> str:
    return f"{content_sha256[:16]}-{image_size}px-v{CACHE_VERSION}"


@dataclass(frozen=True, eq=False)
class StoredEntry:
    path: Path
    images: np.ndarray  # uint8 [N, S, S, 3], read-only memory map
    labels: np.ndarray  # int64 [N, 3]
    names: tuple[str, ...]
    skipped: tuple[Skipped, ...]
    n_scanned: int
    image_size: int
    content_sha256: str


def _tsv_field(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def write_entry(
    folder: Path,
    *,
    images: np.ndarray,
    labels: np.ndarray,
    names: list[str],
    skipped: list[Skipped],
    n_scanned: int,
    image_size: int,
    content_sha256: str,
) -> None:
    np.save(folder / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
    np.save(folder / "labels.npy", np.ascontiguousarray(labels, dtype=np.int64))
    lines = ["name\treason"] + [f"{_tsv_field(s.name)}\t{_tsv_field(s.reason)}" for s in skipped]
    (folder / SKIPPED_TSV).write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta = {
        "format": FORMAT,
        "version": CACHE_VERSION,
        "content_sha256": content_sha256,
        "image_size": image_size,
        "n_images": len(names),
        "n_scanned": n_scanned,
        "names": names,
        "skipped": [[s.name, s.reason] for s in skipped],
    }
    # meta.json last: its presence marks a complete build even before the atomic rename.
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None
    if meta.get("version") != CACHE_VERSION:
        return None
    return meta


def read_entry(folder: Path) -> StoredEntry | None:
    """The entry in ``folder``, or None if it is missing, from another version, or damaged."""
    meta = _read_meta(folder)
    if meta is None:
        return None
    try:
        n, size = int(meta["n_images"]), int(meta["image_size"])
        # Memory-mapped: opening is instant, processes share the page cache, and read-only
        # protects the cache from callers. Entries are never modified in place (only renamed
        # away and unlinked), so a map stays valid for as long as it is held.
        images = np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(folder / "labels.npy", allow_pickle=False)
        names = tuple(str(x) for x in meta["names"])
        skipped = tuple(Skipped(str(a), str(b)) for a, b in meta["skipped"])
        n_scanned = int(meta["n_scanned"])
        sha = str(meta["content_sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if images.shape != (n, size, size, 3) or images.dtype != np.uint8:
        return None
    if labels.shape != (n, 3) or labels.dtype != np.int64 or len(names) != n:
        return None
    return StoredEntry(folder, images, labels, names, skipped, n_scanned, size, sha)
