"""Dataset plug-ins: what a dataset declares (its tasks, defaults) and how it loads.

A plug-in is a :class:`DatasetPlugin`. Built-ins register here; a third-party package
registers through the entry-point group ``mtlbench.datasets`` (each entry point names a plug-in
object, or a callable without arguments that returns one), see ``docs/datasets.md``. Names are
unique: a plug-in may not replace another one.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

from mtlbench.data.describe import describe
from mtlbench.data.plugin import DatasetPlugin, LoadedData
from mtlbench.infra.progress import Reporter

__all__ = [
    "ENTRY_POINT_GROUP",
    "DatasetPlugin",
    "LoadedData",
    "all_plugins",
    "get",
    "inspect_plugin",
    "load",
]

ENTRY_POINT_GROUP = "mtlbench.datasets"


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
        from mtlbench.data.multi_digits_plugin import MULTI_DIGITS, MULTI_DIGITS_4
        from mtlbench.data.utkface import UTKFACE

        for plugin in (UTKFACE, MULTI_DIGITS, MULTI_DIGITS_4):
            register(plugin)


def load(
    plugin: DatasetPlugin,
    source: str | Path | None,
    image_size: int,
    *,
    cache_dir: Path,
    reporter: Reporter | None = None,
) -> LoadedData:
    """``plugin.load`` with its result checked against the declaration: one label column per
    task (n_outputs for a multilabel one), class labels within each task's classes, images
    of the declared channels and the requested size. A mismatch is the plug-in's bug, named
    here rather than deep in training."""
    data = plugin.load(source, image_size, cache_dir=cache_dir, reporter=reporter)
    tasks = plugin.tasks
    if data.labels.ndim != 2 or data.labels.shape[1] != tasks.n_columns:
        raise ValueError(
            f"dataset {plugin.name!r} declares {len(tasks)} tasks reading {tasks.n_columns} "
            f"label columns, but its labels have shape {data.labels.shape}"
        )
    if data.channels != plugin.channels:
        raise ValueError(
            f"dataset {plugin.name!r} declares channels={plugin.channels} but returned "
            f"{data.channels}-channel images (set DatasetPlugin(channels={data.channels}))"
        )
    if data.images.shape[2] != image_size:
        raise ValueError(
            f"dataset {plugin.name!r} returned {data.images.shape[2]} px images for "
            f"image_size={image_size}"
        )
    for t in tasks:
        if t.kind == "regression" or not len(data.labels):
            continue
        cols = data.labels[:, t.columns]
        high = 1 if t.kind in ("binary", "multilabel") else t.n_outputs - 1
        if cols.min() < 0 or cols.max() > high or not np.array_equal(cols, np.round(cols)):
            raise ValueError(
                f"dataset {plugin.name!r}, task {t.name!r} ({t.kind}): labels must be whole "
                f"numbers in 0..{high}, found {cols.min()}..{cols.max()}"
            )
    return data


def inspect_plugin(
    plugin: DatasetPlugin,
    source: str | None,
    *,
    cache_dir: Path,
    reporter: Reporter | None = None,
) -> str:
    """The plug-in's own ``inspector`` when it has one, else ``source`` loaded through the
    plug-in (checked like a run's data) and described from the declared tasks."""
    if plugin.inspector is not None:
        return plugin.inspector(source, cache_dir=cache_dir, reporter=reporter)

    data = load(plugin, source, plugin.default_image_size, cache_dir=cache_dir, reporter=reporter)
    return describe(plugin, data)
