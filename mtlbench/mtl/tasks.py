"""Tasks as data: what each head predicts, its loss, its metric and its constant-predictor
reference, built from the task's kind; and the three UTKFace tasks.

Labels arrive as a tensor ``[B, columns]``; each task reads its own column (a multilabel task
reads ``n_outputs`` columns from ``column`` on). Losses are batch means; metrics are accumulated
as sums so evaluation over batches of different sizes stays exact. Nothing here (nor anywhere
downstream) branches on a task's name: only on its declared kind.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

TaskKind = Literal["regression", "binary", "multiclass", "multilabel"]
TASK_KINDS: tuple[str, ...] = ("regression", "binary", "multiclass", "multilabel")


@dataclass(frozen=True)
class Task:
    name: str
    column: int
    kind: TaskKind
    n_outputs: int
    metric: str  # short metric name, logged as ``val/<metric>`` and ``test/<metric>``
    higher_is_better: bool
    unit: str = ""  # of the metric, for tables and figures ("years"; "" for a fraction)
    classes: tuple[str, ...] = ()  # optional class names, for predictions (model card)

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ValueError(
                f"task {self.name!r}: unknown kind {self.kind!r}; valid: {', '.join(TASK_KINDS)}"
            )
        if self.n_outputs < 1 or (self.kind == "binary" and self.n_outputs != 1):
            raise ValueError(f"task {self.name!r}: {self.kind} with {self.n_outputs} outputs")
        if self.kind == "multiclass" and self.n_outputs < 2:
            raise ValueError(f"task {self.name!r}: multiclass needs at least 2 outputs")
        if self.classes and (self.kind == "regression" or len(self.classes) != self.n_classes):
            raise ValueError(
                f"task {self.name!r}: {len(self.classes)} class names for a {self.kind} task "
                f"with {self.n_classes} classes"
            )

    @property
    def n_classes(self) -> int:
        """Classes (or multilabel labels) the task tells apart: 2 for a binary task's one
        output."""
        return 2 if self.kind == "binary" else self.n_outputs

    @property
    def columns(self) -> slice:
        """The label columns this task reads."""
        width = self.n_outputs if self.kind == "multilabel" else 1
        return slice(self.column, self.column + width)

    def error(self, metric_value: float) -> float:
        """The metric as an error (lower is better): MAE as is, 1 - accuracy."""
        return 1.0 - metric_value if self.higher_is_better else metric_value

    def constant_predictor(self, labels: np.ndarray) -> tuple[float, float]:
        """The best constant prediction on ``labels`` (the full label matrix) and its error in
        this task's metric: the median and its MAE (regression), the majority class and its
        error rate (binary, multiclass), the per-label majority and its mean error
        (multilabel). Normalises the model-selection score and Delta-m-like comparisons."""
        cols = labels[:, self.columns]
        if self.kind == "regression":
            y = cols[:, 0].astype(np.float64)
            median = float(np.median(y))
            return median, max(float(np.abs(y - median).mean()), 1e-6)
        if self.kind == "multilabel":
            ones = cols.astype(np.float64).mean(axis=0)
            return float("nan"), max(float(np.minimum(ones, 1 - ones).mean()), 1e-6)
        counts = np.bincount(cols[:, 0].astype(np.int64))
        return float(counts.argmax()), max(float(1.0 - counts.max() / counts.sum()), 1e-6)

    def constant_metric(self, train: np.ndarray, test: np.ndarray) -> float:
        """This task's metric on ``test`` (label matrix) of the best constant prediction
        fitted on ``train``: the median's MAE, the majority class's accuracy, the per-label
        majority's mean accuracy (multilabel)."""
        fit, cols = train[:, self.columns], test[:, self.columns]
        if self.kind == "regression":
            median = float(np.median(fit[:, 0].astype(np.float64)))
            return float(np.abs(cols[:, 0].astype(np.float64) - median).mean())
        if self.kind == "multilabel":
            majority = fit.astype(np.float64).mean(axis=0) >= 0.5
            return float((cols.astype(bool) == majority[None, :]).mean())
        majority = int(np.bincount(fit[:, 0].astype(np.int64)).argmax())
        return float((cols[:, 0].astype(np.int64) == majority).mean())

    def loss(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Batch-mean loss of this head's ``output`` against the label matrix."""
        # Losses are computed in float32 even under bf16 autocast: they feed the weighting.
        out = output.float()
        if self.kind == "multilabel":
            return F.binary_cross_entropy_with_logits(out, labels[:, self.columns].float())
        target = labels[:, self.column]
        if self.kind == "regression":
            return F.l1_loss(out.squeeze(1), target.float())
        if self.kind == "binary":
            return F.binary_cross_entropy_with_logits(out.squeeze(1), target.float())
        # Labels are int64, or float when a plug-in has real-valued regression targets.
        return F.cross_entropy(out, target.long())

    def metric_sum(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sum over the batch of absolute errors (regression) or correct predictions (for a
        multilabel task: each item's fraction of labels right)."""
        out = output.float()
        if self.kind == "multilabel":
            right = ((out > 0).long() == labels[:, self.columns].long()).float()
            return right.mean(dim=1).sum()
        target = labels[:, self.column]
        if self.kind == "regression":
            return (out.squeeze(1) - target.float()).abs().sum()
        if self.kind == "binary":
            return ((out.squeeze(1) > 0).long() == target.long()).sum().float()
        return (out.argmax(dim=1) == target.long()).sum().float()


AGE = Task("age", 0, "regression", 1, "age_mae", higher_is_better=False, unit="years")
GENDER = Task(
    "gender", 1, "binary", 1, "gender_acc", higher_is_better=True, classes=("male", "female")
)
RACE = Task(
    "race",
    2,
    "multiclass",
    5,
    "race_acc",
    higher_is_better=True,
    classes=("White", "Black", "Asian", "Indian", "Others"),
)
TASKS: tuple[Task, ...] = (AGE, GENDER, RACE)


@dataclass(frozen=True)
class TaskSet:
    """The tasks of one dataset, in head and label-column order."""

    tasks: tuple[Task, ...]

    def __post_init__(self) -> None:
        names = [t.name for t in self.tasks]
        if not names:
            raise ValueError("a task set needs at least one task")
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {', '.join(names)}")
        metrics = [t.metric for t in self.tasks]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"metric names must be unique, got {', '.join(metrics)}")

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> Task:
        return self.tasks[index]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def n_columns(self) -> int:
        """Label columns the tasks read (one each; n_outputs for a multilabel task)."""
        return max(t.columns.stop for t in self.tasks)

    def metric_names(self, prefix: str = "val") -> tuple[str, ...]:
        """``<prefix>/<metric>`` of every task, e.g. ``val/age_mae``."""
        return tuple(f"{prefix}/{t.metric}" for t in self.tasks)

    def to_json(self) -> str:
        """The declarations (what a report needs to read a run without the plug-in)."""
        return json.dumps([dataclasses.asdict(t) for t in self.tasks], separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> TaskSet:
        items = json.loads(text)
        return TaskSet(tuple(Task(**{**i, "classes": tuple(i.get("classes", ()))}) for i in items))

    def by_metric(self, column: str) -> Task | None:
        """The task whose metric ``column`` is (``test/age_mae``, ``best_val/age_mae`` or
        ``age_mae``), or None."""
        metric = column.rsplit("/", 1)[-1]
        return next((t for t in self.tasks if t.metric == metric), None)

    def by_name(self, name: str) -> Task:
        for t in self.tasks:
            if t.name == name:
                return t
        raise ValueError(f"unknown task {name!r}; valid: {', '.join(self.names)}")


UTKFACE_TASKS = TaskSet(TASKS)


def task_losses(
    outputs: Sequence[torch.Tensor], labels: torch.Tensor, tasks: Sequence[Task] = TASKS
) -> torch.Tensor:
    """``[T]``: each task's batch-mean loss of its head's output (graph kept)."""
    return torch.stack([t.loss(o, labels) for t, o in zip(tasks, outputs, strict=True)])


def random_batch(
    batch_size: int,
    image_size: int,
    *,
    seed: int = 0,
    tasks: Sequence[Task] = TASKS,
    channels: int = 3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A reproducible random batch for benchmarks and tests, drawn on the CPU from its own
    generator: normal images and, per task in column order, labels in its range (regression
    1-89, UTKFace's ages; binary and multilabel 0/1; multiclass 0..n_outputs-1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, channels, image_size, image_size, generator=g)
    y = torch.zeros(batch_size, max(t.columns.stop for t in tasks), dtype=torch.int64)
    for t in sorted(tasks, key=lambda t: t.column):
        low, high = {"regression": (1, 90), "multiclass": (0, t.n_outputs)}.get(t.kind, (0, 2))
        width = t.columns.stop - t.columns.start
        y[:, t.columns] = torch.randint(low, high, (batch_size, width), generator=g)
    return x, y
