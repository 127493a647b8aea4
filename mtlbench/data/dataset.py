"""load_dataset: any source -> decoded, labelled uint8 arrays, decoded once and cached."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtlbench.data.cache import build_once
from mtlbench.data.decode import decode_many, refuse_during_worker_start
from mtlbench.data.entry import SKIPPED_TSV, StoredEntry, entry_key, read_entry, write_entry
from mtlbench.data.errors import DataError, Skipped
from mtlbench.data.names import Labels
from mtlbench.data.scan import scan
from mtlbench.data.sources import FolderSource, Source, open_source
from mtlbench.data.synthetic import make_synthetic_folder
from mtlbench.infra.progress import NullReporter, Reporter

SYNTHETIC = "synthetic"
IMAGE_SIZE_RANGE = (4, 1024)


@dataclass(frozen=True, eq=False)
class DecodedDataset:
    images: np.ndarray  # uint8 [N, S, S, 3] RGB (a read-only memory map of the cache entry)
    labels: np.ndarray  # int64 [N, 3]: age, gender, race
    names: tuple[str, ...]  # member / relative names, same order (sorted)
    skipped: tuple[Skipped, ...]
    source: str  # what the user passed, or "synthetic"
    content_sha256: str
    image_size: int
    synthetic: bool
    n_scanned: int  # files looked at: images + skipped
    skipped_report: Path | None = None  # TSV of every skipped file, inside the cache entry

    def __len__(self) -> int:
        return len(self.names)

    def summary(self) -> str:
        text = f"{len(self):,} images, {len(self.skipped):,} skipped"
        if self.skipped_report is not None:
            text += f": see {self.skipped_report}"
        return text


def is_synthetic(source: str | Path | None) -> bool:
    return source is None or (isinstance(source, str) and source == SYNTHETIC)


def load_dataset(
    source: str | Path | None,
    image_size: int,
    *,
    cache_dir: Path,
    reporter: Reporter | None = None,
    workers: int | None = None,
) -> DecodedDataset:
    """Decoded images and labels of ``source`` at ``image_size`` px, from the cache if possible.

    ``source`` is a folder, a tar/zip archive, or None / "synthetic" for the built-in faces.
    Raises DataError (one line) when the source cannot be used.
    """
    low, high = IMAGE_SIZE_RANGE
    if not low <= image_size <= high:
        raise ValueError(f"image_size must be between {low} and {high}, got {image_size}")
    reporter = reporter if reporter is not None else NullReporter()
    cache_dir = Path(cache_dir).expanduser()
    if is_synthetic(source):
        folder = make_synthetic_folder(cache_dir, reporter=reporter)
        stored = load_entry(
            FolderSource(folder), SYNTHETIC, image_size, cache_dir, reporter, workers
        )
        return _dataset(stored, SYNTHETIC, synthetic=True)
    assert source is not None  # is_synthetic covers None
    path = Path(source).expanduser()
    stored = load_entry(open_source(path), str(source), image_size, cache_dir, reporter, workers)
    return _dataset(stored, str(source), synthetic=False)


def _dataset(stored: StoredEntry, source: str, *, synthetic: bool) -> DecodedDataset:
    report = stored.path / SKIPPED_TSV if stored.skipped else None
    if not stored.names:
        raise DataError(_nothing_usable(source, stored))
    return DecodedDataset(
        images=stored.images,
        labels=stored.labels,
        names=stored.names,
        skipped=stored.skipped,
        source=source,
        content_sha256=stored.content_sha256,
        image_size=stored.image_size,
        synthetic=synthetic,
        n_scanned=stored.n_scanned,
        skipped_report=report,
    )


def _nothing_usable(source: str, stored: StoredEntry) -> str:
    if stored.n_scanned == 0:
        return f"no files found in {source} (it is empty)"
    reason, count = Counter(s.reason for s in stored.skipped).most_common(1)[0]
    return (
        f"no valid image found in {source}: all {stored.n_scanned:,} files were skipped, "
        f"most often for '{reason}' ({count:,}); full list in {stored.path / SKIPPED_TSV}"
    )


def load_entry(
    source: Source,
    display: str,
    image_size: int,
    cache_dir: Path,
    reporter: Reporter,
    workers: int | None,
) -> StoredEntry:
    """The cache entry for ``source`` at ``image_size``, decoding the source first if needed."""
    refuse_during_worker_start()
    sha = source.content_sha256()

    def build(folder: Path) -> None:
        _build(folder, source, sha, display, image_size, reporter, workers)

    return build_once(cache_dir, entry_key(sha, image_size), build, read_entry)


def _build(
    folder: Path,
    source: Source,
    sha: str,
    display: str,
    image_size: int,
    reporter: Reporter,
    workers: int | None,
) -> None:
    started = time.perf_counter()
    skipped: list[Skipped] = []
    labels: dict[str, Labels] = {}
    name = Path(display).name or display
    with reporter.progress(f"decoding {name} at {image_size} px", total=source.count()) as task:

        def decodable() -> Iterator[tuple[str, bytes]]:
            for item in scan(source):
                if isinstance(item, Skipped):
                    skipped.append(item)
                    task.advance(1)
                else:
                    labels[item.name] = item.labels
                    yield item.name, item.data

        decoded = decode_many(decodable(), image_size, workers=workers, advance=task.advance)
    skipped.extend(Skipped(n, r) for n, r in decoded.failures)
    skipped.sort(key=lambda s: s.name)
    # Sorted by name so a folder and an archive of the same files give identical arrays.
    order = sorted(range(len(decoded.names)), key=decoded.names.__getitem__)
    is_sorted = order == list(range(len(order)))
    images = decoded.images if is_sorted else decoded.images[np.asarray(order, dtype=np.int64)]
    names = [decoded.names[i] for i in order]
    label_rows = [(labels[n].age, labels[n].gender, labels[n].race) for n in names]
    write_entry(
        folder,
        images=images,
        labels=np.asarray(label_rows, dtype=np.int64).reshape(-1, 3),
        names=names,
        skipped=skipped,
        n_scanned=len(names) + len(skipped),
        image_size=image_size,
        content_sha256=sha,
    )
    reporter.info(
        f"decoded {len(names):,} images of {display} at {image_size} px in "
        f"{time.perf_counter() - started:.1f} s ({len(skipped):,} skipped)"
    )
