"""``mtlbench data inspect --dataset NAME``: any plug-in's data described from its declared
tasks (UTKFace's own inspection, with file-level skip reasons, is :mod:`.inspection`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mtlbench.data.plugin import DatasetPlugin, LoadedData

if TYPE_CHECKING:
    from mtlbench.mtl.tasks import Task

Counts = tuple[tuple[str, int], ...]
_SPLITS = ("train", "val", "test")
_BINS = 10


def shares(counts: Counts, total: int) -> str:
    return ", ".join(f"{name} {n:,} ({100 * n / total:.1f}%)" for name, n in counts)


def bars(counts: Counts, total: int, width: int = 30) -> list[str]:
    peak = max(n for _, n in counts) or 1
    return [
        f"  {name:>7} {n:>7,} {100 * n / total:5.1f}% {'#' * round(width * n / peak)}"
        for name, n in counts
    ]


def _class_names(task: Task) -> Sequence[str]:
    if task.classes:
        return task.classes
    return [str(k) for k in range(task.n_classes)]


def _regression_lines(task: Task, values: np.ndarray) -> list[str]:
    unit = f" {task.unit}" if task.unit else ""
    lines = [
        f"{task.name} (regression): {values.min():g}-{values.max():g}{unit}, "
        f"mean {values.mean():.4g}, median {np.median(values):.4g}"
    ]
    counts, edges = np.histogram(values, bins=_BINS)
    labels = [f"{lo:.3g}-{hi:.3g}" for lo, hi in itertools.pairwise(edges)]
    return lines + bars(tuple(zip(labels, map(int, counts), strict=True)), len(values))


def task_lines(task: Task, labels: np.ndarray) -> list[str]:
    """One task's label distribution: range and histogram, class shares, or positive rates."""
    cols = labels[:, task.columns]
    if task.kind == "regression":
        return _regression_lines(task, cols[:, 0].astype(np.float64))
    names = _class_names(task)
    if task.kind == "multilabel":
        what, counts = "multilabel, positives", cols.astype(np.int64).sum(axis=0)
    else:
        what, counts = task.kind, np.bincount(cols[:, 0].astype(np.int64), minlength=len(names))
    pairs = tuple(zip(names, map(int, counts), strict=True))
    return [f"{task.name} ({what}): " + shares(pairs, len(cols))]


def describe(plugin: DatasetPlugin, data: LoadedData) -> str:
    n, channels, side = data.images.shape[:3]
    lines = [f"dataset: {plugin.name} ({plugin.description})", f"source: {data.source}"]
    if data.note:
        lines.append(data.note)
    lines += [
        f"content sha256: {data.sha256}",
        f"images: {n:,}, {channels} channel(s), {side} px; {data.n_skipped:,} skipped",
    ]
    if data.split is not None:
        sizes = np.bincount(data.split.astype(np.int64), minlength=3)
        lines.append(
            "own split: " + ", ".join(f"{s} {k:,}" for s, k in zip(_SPLITS, sizes, strict=True))
        )
    if n:
        for task in plugin.tasks:
            lines += task_lines(task, data.labels)
    return "\n".join(lines)
