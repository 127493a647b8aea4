"""MoDo, multi-objective gradient with double sampling (Chen, Fernando, Ying & Chen,
"Three-Way Trade-Off in Multi-Objective Learning: Optimization, Generalization and
Conflict-Avoidance", NeurIPS 2023 / JMLR 2024, Algorithm 1).

Each step uses three independent samples z1, z2, z3 of the training distribution (here: the
batch split into three disjoint parts, ``samples_per_step = 3``). The MGDA weights take one
projected stochastic-gradient step on ``1/2 ||J lambda||^2`` whose gradient is estimated without
bias from the two independent samples:
``lambda <- Proj_simplex(lambda - gamma (J_1 J_2^T lambda + rho lambda))``; the network follows
``d = J_3^T lambda``. ``lambda`` starts at 1/T and persists across steps (a buffer).

Defaults ``gamma = 0.001``, ``rho = 0.1`` (LibMTL, from the official code; torchjd's class
defaults are 0.1 / 0.1). The simplex projection is the exact sort-based one, in float64. The
step-size is applied to the raw (unnormalised) cross-Gramian, as in the paper and the official
code: with large gradients (an L1 age loss in years) ``gamma`` must be searched. Task heads get
``sum_t lambda_t L_t`` on the whole batch (the project's convention; LibMTL feeds them the
unweighted loss sum averaged over the three samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtlbench.mtl.tasks import Task
from mtlbench.weighting._simplex import project_simplex
from mtlbench.weighting.base import GradientNeed, HyperParam, SampleWeights, Strategy
from mtlbench.weighting.registry import register


@register
class MoDo(Strategy):
    lambd: torch.Tensor  # buffer
    name = "modo"
    needs = GradientNeed.SHARED_PARAMETERS
    samples_per_step = 3
    gramian_blocks = ((0, 1),)  # J_1 J_2^T only
    update_samples = (2,)  # d = J_3^T (...)
    paper = "Chen, Fernando, Ying & Chen, NeurIPS 2023 (JMLR 2024)"
    summary = "stochastic MGDA weights from two independent samples, update on a third"
    hparams = (
        HyperParam("gamma", 1e-3, "step size of the task weights", low=1e-6, high=10.0, log=True),
        HyperParam("rho", 0.1, "l2 regularisation of the task weights", low=0.0, high=10.0),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.register_buffer(
            "lambd", torch.full((self.n_tasks,), 1.0 / self.n_tasks, dtype=torch.float64)
        )

    def update(self, cross: np.ndarray) -> np.ndarray:
        """One MoDo step on ``lambda`` from the cross-Gramian ``J_1 J_2^T`` (float64)."""
        gamma = float(self.config["gamma"])  # type: ignore[arg-type]
        rho = float(self.config["rho"])  # type: ignore[arg-type]
        lam = self.lambd.cpu().numpy()
        new = project_simplex(lam - gamma * (cross @ lam + rho * lam))
        self.lambd.copy_(torch.as_tensor(new, dtype=torch.float64))
        return new

    def sample_gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> SampleWeights:
        n = self.n_tasks
        lam = self.update(gram.numpy()[0:n, n : 2 * n])
        shared = torch.zeros(3, n, dtype=torch.float32)
        shared[2] = torch.as_tensor(lam, dtype=torch.float32)
        return SampleWeights(shared, shared[2].clone())
