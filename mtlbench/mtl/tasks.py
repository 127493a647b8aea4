"""The three UTKFace tasks: what each head predicts, its loss and its metric.

Labels arrive as an int64 tensor ``[B, 3]`` with columns (age, gender, race); each task reads
its own column. Losses are batch means; metrics are accumulated as sums so evaluation over
batches of different sizes stays exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

TaskKind = Literal["regression", "binary", "multiclass"]


@dataclass(frozen=True)
class Task:
    name: str
    column: int
    kind: TaskKind
    n_outputs: int
    metric: str  # short metric name, logged as ``val/<metric>`` and ``test/<metric>``
    higher_is_better: bool

    def loss(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Batch-mean loss of this head's ``output`` against the label matrix."""
        target = labels[:, self.column]
        # Losses are computed in float32 even under bf16 autocast: they feed the weighting.
        out = output.float()
        if self.kind == "regression":
            return F.l1_loss(out.squeeze(1), target.float())
        if self.kind == "binary":
            return F.binary_cross_entropy_with_logits(out.squeeze(1), target.float())
        return F.cross_entropy(out, target)

    def metric_sum(self, output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Sum over the batch of absolute errors (regression) or correct predictions."""
        target = labels[:, self.column]
        out = output.float()
        if self.kind == "regression":
            return (out.squeeze(1) - target.float()).abs().sum()
        if self.kind == "binary":
            return ((out.squeeze(1) > 0).long() == target).sum().float()
        return (out.argmax(dim=1) == target).sum().float()


AGE = Task("age", 0, "regression", 1, "age_mae", higher_is_better=False)
GENDER = Task("gender", 1, "binary", 1, "gender_acc", higher_is_better=True)
RACE = Task("race", 2, "multiclass", 5, "race_acc", higher_is_better=True)
TASKS: tuple[Task, ...] = (AGE, GENDER, RACE)


def task_losses(
    outputs: Sequence[torch.Tensor], labels: torch.Tensor, tasks: Sequence[Task] = TASKS
) -> torch.Tensor:
    """``[T]``: each task's batch-mean loss of its head's output (graph kept)."""
    return torch.stack([t.loss(o, labels) for t, o in zip(tasks, outputs, strict=True)])


def random_batch(
    batch_size: int, image_size: int, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A reproducible random batch (normal images, labels in every task's range: age 1-89,
    gender 0/1, race 0-4) for benchmarks and tests; drawn on the CPU from its own generator."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, image_size, image_size, generator=g)
    y = torch.stack(
        [
            torch.randint(1, 90, (batch_size,), generator=g),
            torch.randint(0, 2, (batch_size,), generator=g),
            torch.randint(0, 5, (batch_size,), generator=g),
        ],
        dim=1,
    )
    return x, y
