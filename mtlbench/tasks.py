"""The three UTKFace tasks: what each head predicts, its loss and its metric.

Labels arrive as an int64 tensor ``[B, 3]`` with columns (age, gender, race); each task reads
its own column. Losses are batch means; metrics are accumulated as sums so evaluation over
batches of different sizes stays exact.
"""

from __future__ import annotations

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
