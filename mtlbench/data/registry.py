"""Dataset plug-ins: what a dataset declares (its tasks, defaults) and how it loads.

A plug-in is a :class:`DatasetPlugin`. Built-ins register here; a third-party package
registers through the entry-point group ``mtlbench.datasets`` (each entry point names a plug-in
object, or a callable without arguments that returns one), see ``docs/datasets.md``. Names are
unique: a plug-in may not replace another one.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mtlbench.infra.progress import Reporter

if TYPE_CHECKING:
    from mtlbench.mtl.tasks import TaskSet

ENTRY_POINT_GROUP = "mtlbench.datasets"


@dataclass(frozen=True)
class LoadedData:
    """What a plug-in's ``load`` returns: every image and label, in a fixed order."""

    images: np.ndarray  # uint8 [N, C, S, S], C = 1 or 3
    labels: np.ndarray  # [N, T]: one column per declared task, in the tasks' order
    strata: np.ndarray  # int64 [N]: the split keeps these groups' proportions
    source: str  # what the user passed, or "synthetic"
    sha256: str  # of the content (not the path): identifies the data in studies and runs
    summary: str = ""  # one line for the console, e.g. "23,708 images, 5 skipped"
    n_skipped: int = 0
    synthetic: bool = False

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
    left/right tasks). ``default_backbone`` names an entry of the backbone registry."""

    name: str
    description: str
    tasks: TaskSet
    load: Loader
    default_image_size: int = 32
    default_backbone: str = "resnet18"
    flip_preserves_labels: bool = True
    options: dict[str, Any] = field(default_factory=dict)


_BUILTIN: dict[str, DatasetPlugin] = {}


def register(plugin: DatasetPlugin) -> DatasetPlugin:
    """Register a built-in plug-in (third-party ones use the entry-point group)."""
    if plugin.name in _BUILTIN:
        raise ValueError(f"dataset {plugin.name!r} is already registered")
    _BUILTIN[plugin.name] = plugin
    return plugin


def _entry_point_plugins() -> dict[str, DatasetPlugin]:
    found: dict[str, DatasetPlugin] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        plugin = obj if isinstance(obj, DatasetPlugin) else obj()
        if not isinstance(plugin, DatasetPlugin):
            raise TypeError(
                f"entry point {ep.name!r} of {ENTRY_POINT_GROUP!r} gave {type(plugin).__name__}, "
                "not a DatasetPlugin"
            )
        if plugin.name in _BUILTIN or plugin.name in found:
            raise ValueError(
                f"dataset {plugin.name!r} (entry point {ep.value}) is registered twice"
            )
        found[plugin.name] = plugin
    return found


def all_plugins() -> dict[str, DatasetPlugin]:
    """Every registered dataset: built-ins first, then entry points, each by name."""
    _load_builtins()
    return {**_BUILTIN, **_entry_point_plugins()}


def available() -> list[str]:
    return list(all_plugins())


def get(name: str) -> DatasetPlugin:
    plugins = all_plugins()
    if name not in plugins:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(plugins)}")
    return plugins[name]


def _load_builtins() -> None:
    if "utkface" not in _BUILTIN:
        from mtlbench.data.utkface import UTKFACE

        register(UTKFACE)


def load(
    plugin: DatasetPlugin,
    source: str | Path | None,
    image_size: int,
    *,
    cache_dir: Path,
    reporter: Reporter | None = None,
) -> LoadedData:
    """``plugin.load`` with its result checked against the declared tasks."""
    data = plugin.load(source, image_size, cache_dir=cache_dir, reporter=reporter)
    if data.labels.ndim != 2 or data.labels.shape[1] != len(plugin.tasks):
        raise ValueError(
            f"dataset {plugin.name!r} declares {len(plugin.tasks)} tasks but its labels have "
            f"shape {data.labels.shape}"
        )
    return data
