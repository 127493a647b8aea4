"""mtlbench-shapes: a complete, minimal dataset plug-in for mtlbench.

Each image is one square on a black background. Three tasks, one per kind of head:

- ``area`` (regression, real-valued): the square's area as a fraction of the image, MAE;
- ``filled`` (binary): a filled square or only its outline, accuracy;
- ``colour`` (multiclass, 3): red, green or blue, accuracy.

``mtlbench run --dataset shapes`` trains every strategy on it; ``--data N`` asks for N images
(default 600). The images are generated from a fixed seed, so ``sha256`` identifies them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from mtlbench.data.plugin import DatasetPlugin, LoadedData
from mtlbench.mtl.tasks import Task, TaskSet

TASKS = TaskSet(
    (
        Task("area", 0, "regression", 1, "area_mae", higher_is_better=False),
        Task(
            "filled", 1, "binary", 1, "filled_acc", higher_is_better=True,
            classes=("outline", "filled"),
        ),
        Task(
            "colour", 2, "multiclass", 3, "colour_acc", higher_is_better=True,
            classes=("red", "green", "blue"),
        ),
    )
)  # fmt: skip


def draw(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [n, 3, size, size] and float labels [n, 3] (area, filled, colour)."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 3, size, size), dtype=np.uint8)
    labels = np.zeros((n, 3), dtype=np.float64)
    for i in range(n):
        side = int(rng.integers(size // 6, size // 2 + 1))
        top, left = rng.integers(0, size - side + 1, 2)
        filled, colour = int(rng.integers(0, 2)), int(rng.integers(0, 3))
        square = images[i, colour, top : top + side, left : left + side]
        square[...] = 255
        if not filled:
            square[1:-1, 1:-1] = 0
        labels[i] = (side * side / size**2, filled, colour)
    return images, labels


def load(
    source: str | Path | None, image_size: int, *, cache_dir: Path, reporter: object = None
) -> LoadedData:
    """``source``: None (or "synthetic") for 600 images, or a number of images."""
    n = 600 if source in (None, "synthetic") else int(source)
    images, labels = draw(n, image_size)
    # Keep the filled x colour groups in proportion in every split.
    strata = (labels[:, 1] * 3 + labels[:, 2]).astype(np.int64)
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    return LoadedData(
        images=images,
        labels=labels,
        strata=strata,
        source=f"shapes:{n}",
        sha256=digest,
        summary=f"{n:,} generated squares ({image_size} px)",
        synthetic=True,
    )


PLUGIN = DatasetPlugin(
    name="shapes",
    description="generated squares: area, filled or outline, colour (mtlbench-shapes)",
    tasks=TASKS,
    load=load,
    default_image_size=32,
    default_backbone="tiny",
    flip_preserves_labels=True,
)
