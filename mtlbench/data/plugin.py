"""The dataset plug-in API: what a plug-in declares (:class:`DatasetPlugin`: its tasks,
defaults, a loader) and what its loader returns (:class:`LoadedData`). See ``docs/datasets.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mtlbench.mtl.tasks import TaskSet


@dataclass(frozen=True)
class LoadedData:
    """What a plug-in's ``load`` returns: every image and label, in a fixed order."""

    images: np.ndarray  # uint8 [N, C, S, S], C = 1 or 3
    # [N, columns]: each task reads its own column(s) (``Task.column``; a multilabel task
    # n_outputs columns from there). Integers, or floats for real-valued regression targets
    # (class columns then hold whole numbers).
    labels: np.ndarray
    strata: np.ndarray  # int64 [N]: the split keeps these groups' proportions
    source: str  # what the user passed, or "synthetic"
    sha256: str  # of the content (not the path): identifies the data in studies and runs
    summary: str = ""  # one line for the console, e.g. "23,708 images, 5 skipped"
    n_skipped: int = 0
    synthetic: bool = False
    note: str = ""  # printed before ``summary`` when set (e.g. "these are stand-in images")
    # Optional fixed split, int8 [N]: 0 train, 1 validation, 2 test (a benchmark's own split,
    # e.g. multi-digits, whose composites share no source digit across splits); None: mtlbench
    # splits by ``strata`` with ``--split`` fractions.
    split: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 [N, C, S, S], got {self.images.dtype} {self.images.shape}"
            )
        n, c, h, w = self.images.shape
        if c not in (1, 3) or h != w:
            raise ValueError(f"images must have 1 or 3 channels and be square, got {c}x{h}x{w}")
        if len(self.labels) != n or len(self.strata) != n:
            raise ValueError(
                f"{n} images but {len(self.labels)} label rows and {len(self.strata)} strata"
            )
        if self.split is not None and (
            len(self.split) != n or not np.isin(np.unique(self.split), (0, 1, 2)).all()
        ):
            raise ValueError("split must hold one of 0 (train), 1 (val), 2 (test) per image")

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])


Loader = Callable[..., LoadedData]


@dataclass(frozen=True)
class DatasetPlugin:
    """A dataset and the tasks it poses.

    ``load(source, image_size, *, cache_dir, reporter)`` returns :class:`LoadedData`; ``source``
    is what ``--data`` says (a path, or None / "synthetic" for a built-in stand-in when the
    plug-in has one). ``flip_preserves_labels`` allows horizontal-flip augmentation (False for
    left/right tasks). ``default_backbone`` names an entry of the backbone registry.
    ``channels`` (1 or 3) is what ``load``'s images have: benchmarks build the model from it
    without loading the data, and loading checks it. ``inspector`` replaces the generic
    ``mtlbench data inspect`` description (:mod:`mtlbench.data.describe`)."""

    name: str
    description: str
    tasks: TaskSet
    load: Loader
    default_image_size: int = 32
    default_backbone: str = "resnet18"
    flip_preserves_labels: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    channels: int = 3
    # ``inspector(source, *, cache_dir, reporter) -> str``: the plug-in's own ``mtlbench data
    # inspect`` text (UTKFace: file-level skip reasons and digests); None: the generic one.
    inspector: Callable[..., str] | None = None

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"dataset {self.name!r}: channels must be 1 or 3, got {self.channels}")
