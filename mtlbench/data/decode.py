"""Bytes -> uint8 RGB arrays of S x S: in-process for small inputs, else in worker processes."""

from __future__ import annotations

import io
import multiprocessing
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice

import numpy as np
from PIL import Image

from mtlbench.data.errors import DataError
from mtlbench.data.sources import one_line

# Face crops are tiny; a header announcing more pixels than this is a bomb or not a face.
MAX_PIXELS = 50_000_000
IN_PROCESS_LIMIT = 2000  # below this, starting worker processes costs more than it saves
CHUNK = 256
_FORMATS = ("JPEG", "PNG")  # only these decoders see untrusted bytes (JPEG covers MPO)


class _Refused(Exception):
    """A well-formed image that we refuse to decode; the message is the skip reason."""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")  # PIL warns when a palette with transparency goes straight to RGB
    return img.convert("RGB")


def _centre_box(width: int, height: int) -> tuple[int, int, int, int]:
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def _decode(data: bytes, size: int) -> np.ndarray:
    with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise _Refused(f"image too large ({width}x{height} pixels, limit {MAX_PIXELS:,})")
        # Draft mode lets libjpeg decode at 1/2, 1/4 or 1/8 scale (never below size x size):
        # 200 px -> 50 px before resizing to 32 roughly halves the one-time decode cost.
        img.draft("RGB", (size, size))
        img.load()  # decode now so truncation raises here (LOAD_TRUNCATED_IMAGES stays off)
        rgb = _to_rgb(img)
        if rgb.width != rgb.height:
            # Crop rather than resize(box=...): the filter would reach past the box's edges.
            rgb = rgb.crop(_centre_box(*rgb.size))
        # BILINEAR in PIL widens its kernel when shrinking (it antialiases), which is what the
        # reference pipeline's torchvision Resize((S, S)) does on PIL images.
        out = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
        return np.asarray(out, dtype=np.uint8)


def decode_image(data: bytes, size: int) -> np.ndarray:
    """uint8 [size, size, 3] RGB; ValueError(reason) when the bytes are not a usable image."""
    if not data:
        raise ValueError("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _decode(data, size)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ValueError(f"decompression bomb refused: {one_line(err)}") from err
        except Image.UnidentifiedImageError as err:
            raise ValueError("cannot decode image: not a JPEG or PNG image") from err
        except _Refused as err:
            raise ValueError(str(err)) from err
        except Exception as err:
            # Untrusted bytes make PIL raise nearly anything (OSError, SyntaxError, struct.error,
            # IndexError ...); every one of them means "skip this file", never "stop the run".
            raise ValueError(f"cannot decode image: {type(err).__name__}: {one_line(err)}") from err


@dataclass(frozen=True)
class ChunkResult:
    images: np.ndarray  # uint8 [k, S, S, 3] for the items whose reason is None, in order
    reasons: tuple[str | None, ...]  # one per input item


def decode_chunk(blobs: list[bytes], size: int) -> ChunkResult:
    images: list[np.ndarray] = []
    reasons: list[str | None] = []
    for data in blobs:
        try:
            images.append(decode_image(data, size))
            reasons.append(None)
        except ValueError as err:
            reasons.append(str(err))
    stacked = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return ChunkResult(stacked, tuple(reasons))


@dataclass(frozen=True)
class Decoded:
    names: list[str]
    images: np.ndarray  # uint8 [N, S, S, 3] in the order of ``names``
    failures: list[tuple[str, str]]  # (name, reason)


def _chunks(items: Iterator[tuple[str, bytes]]) -> Iterator[list[tuple[str, bytes]]]:
    while chunk := list(islice(items, CHUNK)):
        yield chunk


class _Collector:
    def __init__(self, size: int, advance: Callable[[int], None]) -> None:
        self.size = size
        self.advance = advance
        self.names: list[str] = []
        self.parts: list[np.ndarray] = []
        self.failures: list[tuple[str, str]] = []

    def add(self, names: list[str], result: ChunkResult) -> None:
        for name, reason in zip(names, result.reasons, strict=True):
            if reason is None:
                self.names.append(name)
            else:
                self.failures.append((name, reason))
        self.parts.append(result.images)
        self.advance(len(names))

    def result(self) -> Decoded:
        empty = np.zeros((0, self.size, self.size, 3), np.uint8)
        images = np.concatenate(self.parts) if self.parts else empty
        return Decoded(self.names, images, self.failures)


def decode_many(
    items: Iterable[tuple[str, bytes]],
    size: int,
    *,
    workers: int | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> Decoded:
    """Decode every (name, bytes) item; order is kept, failures come back with their reason."""
    n_workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    stream = iter(items)
    head = list(islice(stream, IN_PROCESS_LIMIT + 1))
    collector = _Collector(size, advance)
    if n_workers == 1 or len(head) <= IN_PROCESS_LIMIT:
        for chunk in _chunks(_chain(head, stream)):
            collector.add([n for n, _ in chunk], decode_chunk([b for _, b in chunk], size))
        return collector.result()
    _decode_in_pool(_chain(head, stream), size, n_workers, collector)
    return collector.result()


def _chain(
    head: list[tuple[str, bytes]], rest: Iterator[tuple[str, bytes]]
) -> Iterator[tuple[str, bytes]]:
    yield from head
    yield from rest


def refuse_during_worker_start() -> None:
    """Fail fast if a decoding worker is re-running the caller's unguarded main script.

    Spawned workers import the parent's ``__main__``; a script that calls load_dataset at top
    level would then wait forever on the cache lock its own parent holds. Python's flag for
    "this process is still starting up" is private, hence the getattr.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(
            "load_dataset was called while a decoding worker process was starting: put the "
            "script's top-level code under `if __name__ == '__main__':`"
        )


def _decode_in_pool(
    items: Iterator[tuple[str, bytes]], size: int, n_workers: int, collector: _Collector
) -> None:
    # spawn, not fork: the caller may already hold torch's thread pools, which fork can wedge.
    context = multiprocessing.get_context("spawn")
    pending: deque[tuple[list[str], Future[ChunkResult]]] = deque()
    try:
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as pool:
            # The main process keeps reading (tar streams are sequential) while workers decode;
            # a bounded queue keeps memory flat however large the archive.
            for chunk in _chunks(items):
                names = [n for n, _ in chunk]
                pending.append((names, pool.submit(decode_chunk, [b for _, b in chunk], size)))
                if len(pending) >= 4 * n_workers:
                    done_names, future = pending.popleft()
                    collector.add(done_names, future.result())
            while pending:
                done_names, future = pending.popleft()
                collector.add(done_names, future.result())
    except BrokenProcessPool as err:
        raise DataError(
            f"an image decoding worker died ({one_line(err)}); if the calling script has no "
            "`if __name__ == '__main__':` guard, add one; otherwise retry with workers=1 to "
            "find the file that crashes the decoder"
        ) from err
