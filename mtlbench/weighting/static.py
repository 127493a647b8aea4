"""Static (fixed, user-given) loss weights: ``L = sum_t w_t L_t``.

The weights are the positional hyperparameter, ``static:1,0.5,2`` in task order
(age, gender, race). One value is broadcast to every task, so ``static`` alone (default ``1``)
equals ``sum`` and ``static:0.5`` is ``sum`` at half the scale. Weights must be >= 0 and not all
zero. The weight-simplex sweep that draws the scalarisation Pareto front (Xin et al. NeurIPS 2022)
is a grid of ``static`` specs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtlbench.mtl.tasks import Task
from mtlbench.weighting.base import GradientNeed, HyperParam, LossCombination, Strategy
from mtlbench.weighting.registry import register


@register
class Static(Strategy):
    weights: torch.Tensor  # buffer
    name = "static"
    fixed_weights = True
    needs = GradientNeed.LOSSES
    paper = "fixed scalarisation (linear scalarisation; Xin et al. NeurIPS 2022)"
    summary = "L = sum_t w_t L_t with user-given w (one value broadcasts)"
    hparams = (
        HyperParam(
            "weights",
            (1.0,),
            "task weights in task order; one value applies to every task",
            kind="floats",
            low=0.0,
            positional=True,
            searchable=False,
        ),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        values = self.config["weights"]
        assert isinstance(values, tuple)
        if len(values) == 1:
            values = values * self.n_tasks
        if len(values) != self.n_tasks:
            names = ", ".join(t.name for t in self.tasks)
            raise ValueError(
                f"static weights {self.config['weights']!r} give {len(values)} values for "
                f"{self.n_tasks} tasks ({names}); give one value or one per task"
            )
        if not any(v > 0 for v in values):
            raise ValueError(f"static weights {values!r} are all zero; at least one must be > 0")
        self.register_buffer("weights", torch.tensor(values, dtype=torch.float32))

    def trained_tasks(self) -> tuple[str, ...]:
        # A zero weight means the task is not trained (static:1,0,0 is a single-task model).
        return tuple(
            t.name for t, w in zip(self.tasks, self.weights.tolist(), strict=True) if w > 0
        )

    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        w = self.weights.to(losses.dtype)
        return LossCombination((w * losses).sum(), w.detach().clone())
