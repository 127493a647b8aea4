"""Image files -> uint8 arrays, prepared as training prepared its cache."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtlbench.data.decode import decode_image

SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class ImageBatch:
    pixels: np.ndarray  # uint8 [N, C, S, S]
    paths: tuple[Path, ...]  # the N images that decoded, in order
    unreadable: tuple[tuple[Path, str], ...]  # (path, reason) for every file skipped


def collect(inputs: Iterable[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files named directly, plus every image under the folders named (sorted, recursive)."""
    files: list[Path] = []
    missing: list[tuple[Path, str]] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            )
        elif path.is_file():
            files.append(path)
        else:
            missing.append((path, "no such file or folder"))
    return files, missing


def _to_channels(rgb: np.ndarray, channels: int) -> np.ndarray:
    if channels == 3:
        return rgb.transpose(2, 0, 1)
    # ITU-R 601 luma, as PIL's convert("L") computes it.
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[None]


def load_images(inputs: Iterable[str | Path], size: int, channels: int = 3) -> ImageBatch:
    """Decode, centre-crop and resize each image to ``size`` x ``size`` with the training
    decoder; files that are missing or do not decode are listed, never fatal."""
    files, unreadable = collect(inputs)
    arrays: list[np.ndarray] = []
    ok: list[Path] = []
    for path in files:
        try:
            rgb = decode_image(path.read_bytes(), size)
        except (OSError, ValueError) as err:
            unreadable.append((path, str(err)))
            continue
        arrays.append(_to_channels(rgb, channels))
        ok.append(path)
    pixels = np.stack(arrays) if arrays else np.zeros((0, channels, size, size), dtype=np.uint8)
    return ImageBatch(pixels, tuple(ok), tuple(unreadable))
