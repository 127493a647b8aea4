"""multi-digits: the MultiMNIST construction of Sener & Koltun (NeurIPS 2018), offline.

Sener & Koltun overlay two MNIST digits (28 px) on a 36 px canvas, one at the top-left corner
and one at the bottom-right (offset 8 px in both directions, so they overlap), take the
pixel-wise maximum and resize to 28 px; the tasks are the left digit and the right digit (10
classes each). Here the digits are the 1,797 handwritten 8 x 8 digits that ship inside
scikit-learn (``load_digits``: 16 grey levels, about 180 per class), upscaled bilinearly.
The same proportions are kept at the final size ``S``: each digit covers ``d = S - o`` pixels
with offset ``o = round(8 S / 36)`` (S = 32: d = 25, o = 7). The four-digit variant puts
digits of side ``d = round(0.6 S)`` in the four corners (offset ``S - d``, S = 40: d = 24,
o = 16), tasks top-left, top-right, bottom-left, bottom-right.

No source image is shared between splits: the 1,797 digits are first divided, stratified by
class, into disjoint train / validation / test pools (70 / 15 / 15 %, seeded; the set has no
two identical images, checked when the pools are drawn), and each split's composites draw their
digits only from its own pool (uniformly, independently for each position). Everything is a
function of the spec (seeded ``numpy`` generators) and is cached like UTKFace: one entry per
spec, built once under a lock and published by an atomic rename (:mod:`mtlbench.data.cache`).
Images are uint8 ``[N, 1, S, S]`` (white digits on black), labels int64 ``[N, T]``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mtlbench.data.cache import build_once

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
POOL_FRACTIONS = (0.70, 0.15, 0.15)
TASK_NAMES: dict[int, tuple[str, ...]] = {
    2: ("left", "right"),
    4: ("top_left", "top_right", "bottom_left", "bottom_right"),
}
N_CLASSES = 10


@dataclass(frozen=True)
class MultiDigitsSpec:
    n_digits: int = 2  # 2 (left / right) or 4 (quadrants)
    image_size: int = 32
    n_train: int = 6000
    n_val: int = 1000
    n_test: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_digits not in TASK_NAMES:
            raise ValueError(
                f"n_digits={self.n_digits} is not supported; valid: "
                f"{', '.join(map(str, TASK_NAMES))}"
            )
        if not 12 <= self.image_size <= 256:
            raise ValueError(f"image_size={self.image_size} must lie in [12, 256]")
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")

    @property
    def tasks(self) -> tuple[str, ...]:
        return TASK_NAMES[self.n_digits]

    def sizes(self) -> tuple[int, int, int]:
        return (self.n_train, self.n_val, self.n_test)


@dataclass(frozen=True, eq=False)
class MultiDigits:
    spec: MultiDigitsSpec
    images: np.ndarray  # uint8 [N, 1, S, S]
    labels: np.ndarray  # int64 [N, T], columns in ``spec.tasks`` order
    split: np.ndarray  # int8 [N]: 0 train, 1 val, 2 test (train first, then val, then test)
    sources: np.ndarray  # int64 [N, T]: the load_digits index of each placed digit
    source_sha256: str  # of the scikit-learn digits (images and targets) this was built from

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def strata(self) -> np.ndarray:
        """int64 [N]: the label tuple as one number (base 10), for stratified subsets."""
        weights = 10 ** np.arange(self.labels.shape[1] - 1, -1, -1)
        return np.asarray(self.labels @ weights, dtype=np.int64)

    def indices(self, part: str) -> np.ndarray:
        if part not in SPLITS:
            raise ValueError(f"unknown split {part!r}; valid: {', '.join(SPLITS)}")
        return np.flatnonzero(self.split == SPLITS.index(part))


def layout(n_digits: int, size: int) -> tuple[int, list[tuple[int, int]]]:
    """Side of one digit and the (row, column) of each digit's top-left corner, task order."""
    if n_digits == 2:
        offset = round(8 * size / 36)
        return size - offset, [(0, 0), (offset, offset)]
    side = round(0.6 * size)
    o = size - side
    return side, [(0, 0), (0, o), (o, 0), (o, o)]


def sklearn_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """The 1,797 digits as uint8 [N, 8, 8] on 0..16, their classes, and a hash of both."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = np.asarray(raw.images, dtype=np.uint8)
    targets = np.asarray(raw.target, dtype=np.int64)
    digest = hashlib.sha256(images.tobytes() + targets.tobytes()).hexdigest()
    return images, targets, digest


def source_pools(targets: np.ndarray, images: np.ndarray, seed: int) -> list[np.ndarray]:
    """Disjoint train / val / test index pools, stratified by class (largest remainder)."""
    flat = images.reshape(len(images), -1)
    if len(np.unique(flat, axis=0)) != len(flat):
        raise ValueError("the source digits contain identical images: pools would leak")
    rng = np.random.default_rng([seed, 1])
    pools: list[list[np.ndarray]] = [[], [], []]
    for cls in range(N_CLASSES):
        members = rng.permutation(np.flatnonzero(targets == cls))
        n_val = round(POOL_FRACTIONS[1] * len(members))
        n_test = round(POOL_FRACTIONS[2] * len(members))
        n_train = len(members) - n_val - n_test
        cuts = np.cumsum([n_train, n_val])
        for pool, part in zip(pools, np.split(members, cuts), strict=True):
            pool.append(part)
    return [np.sort(np.concatenate(p)) for p in pools]


def upscale(digits: np.ndarray, side: int) -> np.ndarray:
    """uint8 [N, 8, 8] on 0..16 -> float32 [N, side, side] on 0..255 (bilinear)."""
    from PIL import Image

    out = np.empty((len(digits), side, side), dtype=np.float32)
    for i, d in enumerate(digits):
        img = Image.fromarray(d.astype(np.float32) * (255.0 / 16.0), mode="F")
        out[i] = np.asarray(img.resize((side, side), Image.Resampling.BILINEAR))
    return np.clip(out, 0.0, 255.0)


def compose(
    glyphs: np.ndarray, chosen: np.ndarray, size: int, positions: list[tuple[int, int]]
) -> np.ndarray:
    """uint8 [N, 1, S, S]: the pixel-wise maximum of the chosen glyphs at their positions."""
    side = glyphs.shape[1]
    canvas = np.zeros((len(chosen), size, size), dtype=np.float32)
    for t, (r, c) in enumerate(positions):
        region = canvas[:, r : r + side, c : c + side]
        np.maximum(region, glyphs[chosen[:, t]], out=region)
    return np.rint(canvas).astype(np.uint8)[:, None]


def build_arrays(spec: MultiDigitsSpec) -> MultiDigits:
    """Construct the dataset in memory (no cache)."""
    images, targets, digest = sklearn_digits()
    side, positions = layout(spec.n_digits, spec.image_size)
    glyphs = upscale(images, side)
    pools = source_pools(targets, images, spec.seed)
    parts_img, parts_src, parts_split = [], [], []
    for k, (pool, n) in enumerate(zip(pools, spec.sizes(), strict=True)):
        rng = np.random.default_rng([spec.seed, 2, k])
        chosen = pool[rng.integers(0, len(pool), size=(n, spec.n_digits))]
        parts_img.append(compose(glyphs, chosen, spec.image_size, positions))
        parts_src.append(chosen)
        parts_split.append(np.full(n, k, dtype=np.int8))
    sources = np.concatenate(parts_src).astype(np.int64)
    return MultiDigits(
        spec,
        np.concatenate(parts_img),
        targets[sources],
        np.concatenate(parts_split),
        sources,
        digest,
    )


def cache_key(spec: MultiDigitsSpec, source_sha256: str) -> str:
    """One entry per spec and per version of scikit-learn's digits."""
    text = json.dumps({"v": FORMAT_VERSION, "src": source_sha256, **asdict(spec)}, sort_keys=True)
    return "multi-digits-" + hashlib.sha256(text.encode()).hexdigest()[:16]


_ARRAYS = ("images", "labels", "split", "sources")


def _write(data: MultiDigits, folder: Path) -> None:
    for name in _ARRAYS:
        np.save(folder / f"{name}.npy", getattr(data, name))
    meta = {"spec": asdict(data.spec), "source_sha256": data.source_sha256, "v": FORMAT_VERSION}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def _read(folder: Path, spec: MultiDigitsSpec) -> MultiDigits | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("v") != FORMAT_VERSION or meta.get("spec") != asdict(spec):
            return None
        arrays = {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in _ARRAYS}
    except (OSError, ValueError):
        return None
    return MultiDigits(spec, source_sha256=str(meta["source_sha256"]), **arrays)


def load_multi_digits(spec: MultiDigitsSpec, cache_dir: Path) -> MultiDigits:
    """The dataset of ``spec``, built once into ``cache_dir`` and memory-mapped from there."""
    digest = sklearn_digits()[2]
    return build_once(
        Path(cache_dir),
        cache_key(spec, digest),
        lambda tmp: _write(build_arrays(spec), tmp),
        lambda entry: _read(entry, spec),
    )
