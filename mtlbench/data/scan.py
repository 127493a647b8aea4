"""Vet a source's entries before any decoding: safe path, image extension, size, UTKFace name."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from mtlbench.data.errors import Skipped
from mtlbench.data.names import IMAGE_EXTENSIONS, Labels, parse_name
from mtlbench.data.sources import Entry, Source

# A 200x200 face JPEG is ~8 kB; anything this big is not a face crop and may be a bomb.
MAX_FILE_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Candidate:
    name: str
    labels: Labels
    data: bytes


def normalise_name(name: str) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def unsafe_reason(name: str) -> str | None:
    """Why an archive member path must not be trusted, or None when it is an ordinary path."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "unsafe member path (absolute)"
    if ".." in PurePosixPath(name).parts:
        return "unsafe member path (contains '..')"
    return None


def _entry_reason(name: str, size: int, seen: set[str]) -> str | None:
    unsafe = unsafe_reason(name)
    if unsafe is not None:
        return unsafe
    if name in seen:
        return "duplicate name (an earlier file with this name was kept)"
    base = PurePosixPath(name).name
    if base.startswith("."):
        return "hidden file"
    if not base.lower().endswith(IMAGE_EXTENSIONS):
        return f"not an image file (expected {', '.join(IMAGE_EXTENSIONS)})"
    if size > MAX_FILE_BYTES:
        return f"file too large ({size:,} bytes, limit {MAX_FILE_BYTES:,})"
    if size == 0:
        return "empty file (0 bytes)"
    return None


def scan(source: Source) -> Iterator[Candidate | Skipped]:
    """Each entry of ``source`` either as a Candidate (bytes read, labels parsed) or Skipped."""
    seen: set[str] = set()
    for item in source.entries():
        if isinstance(item, Skipped):
            yield Skipped(normalise_name(item.name), item.reason)
            continue
        yield _vet(item, seen)


def _vet(entry: Entry, seen: set[str]) -> Candidate | Skipped:
    name = normalise_name(entry.name)
    reason = _entry_reason(name, entry.size, seen)
    if reason is not None:
        return Skipped(name, reason)
    try:
        labels = parse_name(PurePosixPath(name).name)
        data = entry.read()
    except ValueError as err:
        return Skipped(name, str(err))
    seen.add(name)
    return Candidate(name, labels, data)
