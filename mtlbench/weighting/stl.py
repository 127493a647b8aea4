"""Single-task learning baseline: one-hot weights, ``L = L_k`` for the chosen task ``k``.

``stl:race`` trains the backbone and the race head on the race loss alone; the other heads
receive zero gradients (they stay at their initialisation and their metrics are meaningless).
Run once per task with the same data, split, image size, backbone and budget as the multi-task
runs: its test metric ``M_k`` is the baseline ``B_k`` of delta-m (Maninis et al. CVPR 2019;
Vandenhende et al. TPAMI 2021):
``delta_m = 100/T * sum_t (-1)^{higher_is_better_t} (M_t - B_t)/B_t``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtlbench.mtl.tasks import Task
from mtlbench.weighting.base import GradientNeed, HyperParam, LossCombination, Strategy
from mtlbench.weighting.registry import register

FIRST = "first"  # the default task: the dataset's first (a grid expands bare ``stl`` per task)


@register
class SingleTask(Strategy):
    weights: torch.Tensor  # buffer
    name = "stl"
    fixed_weights = True
    needs = GradientNeed.LOSSES
    paper = "single-task baseline for delta-m (Maninis et al. CVPR 2019)"
    summary = "one-hot weights: only the chosen task's loss"
    hparams = (
        HyperParam(
            "task",
            FIRST,
            "the one task this model learns (default: the first; the grid runs each)",
            kind="str",
            positional=True,
            searchable=False,
            expand=True,
        ),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        names = [t.name for t in self.tasks]
        task = self.config["task"]
        if task == FIRST and FIRST not in names:
            task = self.config["task"] = names[0]
        if task not in names:
            raise ValueError(f"stl task {task!r} is not one of the tasks: {', '.join(names)}")
        weights = torch.zeros(self.n_tasks)
        weights[names.index(str(task))] = 1.0
        self.register_buffer("weights", weights)

    def trained_tasks(self) -> tuple[str, ...]:
        return (str(self.config["task"]),)

    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        w = self.weights.to(losses.dtype)
        # 0 * L_t keeps the other heads in the graph, so they get (zero) gradients, not None.
        return LossCombination((w * losses).sum(), w.detach().clone())
