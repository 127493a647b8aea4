"""``mtlbench data inspect``: what a source holds, label distributions, what was skipped."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtlbench.data.dataset import SYNTHETIC, is_synthetic, load_entry
from mtlbench.data.describe import Counts, bars, shares
from mtlbench.data.entry import CACHE_VERSION, SKIPPED_TSV, StoredEntry, read_entry
from mtlbench.data.errors import Skipped
from mtlbench.data.names import GENDER_NAMES, RACE_NAMES
from mtlbench.data.sources import FolderSource, Source, open_source
from mtlbench.data.synthetic import make_synthetic_folder
from mtlbench.infra.progress import NullReporter, Reporter

# Labels and skip reasons do not depend on the image size, so the cheapest decode will do
# (JPEG draft mode decodes at 1/8 scale) unless an entry at any size is already cached.
INSPECT_SIZE = 16
_TEXT_SKIPPED_LIMIT = 20


@dataclass(frozen=True)
class DatasetInspection:
    source: str
    content_sha256: str
    files_sha256: str  # over sorted (name, bytes): one value for any packing of the same files
    n_files: int  # regular files the files digest covers
    n_scanned: int
    n_images: int
    skipped: tuple[Skipped, ...]
    skipped_report: Path | None
    age_by_decade: Counts  # ("0-9", n), ("10-19", n), ... up to the oldest decade present
    age_min: int | None
    age_max: int | None
    age_mean: float | None
    age_median: float | None
    gender_counts: Counts  # (name, n) in label order
    race_counts: Counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "content_sha256": self.content_sha256,
            "files_sha256": self.files_sha256,
            "n_files": self.n_files,
            "n_scanned": self.n_scanned,
            "n_images": self.n_images,
            "n_skipped": len(self.skipped),
            "skipped": [{"name": s.name, "reason": s.reason} for s in self.skipped],
            "skipped_report": str(self.skipped_report) if self.skipped_report else None,
            "age": {
                "min": self.age_min,
                "max": self.age_max,
                "mean": self.age_mean,
                "median": self.age_median,
                "by_decade": dict(self.age_by_decade),
            },
            "gender": dict(self.gender_counts),
            "race": dict(self.race_counts),
        }

    def to_text(self) -> str:
        lines = [
            f"source: {self.source}",
            f"content sha256: {self.content_sha256}",
            f"files digest: {self.files_sha256} over {self.n_files:,} files "
            "(the same for any archive or folder of these files)",
            f"files: {self.n_scanned:,} scanned, {self.n_images:,} images, "
            f"{len(self.skipped):,} skipped",
        ]
        if self.n_images:
            lines.append(
                f"age: {self.age_min}-{self.age_max} years, mean {self.age_mean:.1f}, "
                f"median {self.age_median:g}"
            )
            lines += bars(self.age_by_decade, self.n_images)
            lines.append("gender: " + shares(self.gender_counts, self.n_images))
            lines.append("race: " + shares(self.race_counts, self.n_images))
        lines += self._skipped_lines()
        return "\n".join(lines)

    def _skipped_lines(self) -> list[str]:
        if not self.skipped:
            return []
        lines = [f"skipped ({len(self.skipped):,}):"]
        lines += [f"  {s.name}: {s.reason}" for s in self.skipped[:_TEXT_SKIPPED_LIMIT]]
        if len(self.skipped) > _TEXT_SKIPPED_LIMIT:
            lines.append(f"  ... and {len(self.skipped) - _TEXT_SKIPPED_LIMIT:,} more")
        if self.skipped_report is not None:
            lines.append(f"full list: {self.skipped_report}")
        return lines


def _label_counts(values: np.ndarray, names: Sequence[str]) -> Counts:
    counts = np.bincount(values, minlength=len(names))
    return tuple((name, int(counts[k])) for k, name in enumerate(names))


def _decades(ages: np.ndarray) -> Counts:
    if not len(ages):
        return ()
    counts = np.bincount(ages // 10)
    return tuple((f"{10 * k}-{10 * k + 9}", int(n)) for k, n in enumerate(counts))


def _any_cached(cache_dir: Path, sha: str) -> StoredEntry | None:
    for folder in sorted(cache_dir.glob(f"{sha[:16]}-*px-v{CACHE_VERSION}")):
        entry = read_entry(folder)
        if entry is not None and entry.content_sha256 == sha:
            return entry
    return None


def inspect_dataset(
    source: str | Path | None,
    *,
    cache_dir: Path,
    reporter: Reporter | None = None,
    workers: int | None = None,
) -> DatasetInspection:
    """Counts, label distributions and skipped files of ``source`` (DataError if unusable).

    Unlike load_dataset, a source without any valid image is reported, not an error.
    """
    reporter = reporter if reporter is not None else NullReporter()
    cache_dir = Path(cache_dir).expanduser()
    src: Source
    if is_synthetic(source):
        src, display = FolderSource(make_synthetic_folder(cache_dir, reporter=reporter)), SYNTHETIC
    else:
        assert source is not None  # is_synthetic covers None
        src, display = open_source(Path(source).expanduser()), str(source)
    sha = src.content_sha256()
    entry = _any_cached(cache_dir, sha)
    if entry is None:
        entry = load_entry(src, display, INSPECT_SIZE, cache_dir, reporter, workers)
    files_sha, n_files = files_digest(src)
    return _summarise(entry, display, files_sha, n_files)


def files_digest(src: Source) -> tuple[str, int]:
    """sha256 over the sorted lines ``<file name> NUL <sha256 of its bytes>``, and the number
    of files. Only base names count, so an archive and the folder it unpacks to agree, and so
    do two archives of the same files compressed differently (their own sha256s differ)."""
    lines: list[bytes] = []
    for item in src.entries():
        if isinstance(item, Skipped):
            continue
        try:
            data = item.read()
        except ValueError:
            continue
        name = item.name.replace("\\", "/").rsplit("/", 1)[-1]
        lines.append(f"{name}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    digest = hashlib.sha256(b"files-v1\n")
    for line in sorted(lines):
        digest.update(line)
    return digest.hexdigest(), len(lines)


def _summarise(entry: StoredEntry, display: str, files_sha: str, n_files: int) -> DatasetInspection:
    ages, genders, races = (entry.labels[:, k] for k in range(3))
    has = len(entry.names) > 0
    return DatasetInspection(
        source=display,
        content_sha256=entry.content_sha256,
        files_sha256=files_sha,
        n_files=n_files,
        n_scanned=entry.n_scanned,
        n_images=len(entry.names),
        skipped=entry.skipped,
        skipped_report=entry.path / SKIPPED_TSV if entry.skipped else None,
        age_by_decade=_decades(ages),
        age_min=int(ages.min()) if has else None,
        age_max=int(ages.max()) if has else None,
        age_mean=float(ages.mean()) if has else None,
        age_median=float(np.median(ages)) if has else None,
        gender_counts=_label_counts(genders, GENDER_NAMES),
        race_counts=_label_counts(races, RACE_NAMES),
    )
