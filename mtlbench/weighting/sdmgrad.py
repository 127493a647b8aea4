"""SDMGrad, stochastic direction-oriented multi-objective gradient descent (Xiao, Ban & Ji,
"Direction-oriented Multi-objective Learning: Simple and Provable Stochastic Algorithms",
NeurIPS 2023).

The direction stays close to a target ``g_0 = J^T w~`` (the mean gradient, ``w~ = 1/T``):
``w* = argmin_{w in simplex} 1/2 ||J^T (w + lambda w~)||^2`` and
``d = J^T (w* + lambda w~) / (1 + lambda)``. With double sampling (the paper's stochastic
algorithm) the objective's gradient ``A (w + lambda w~)`` uses the cross matrix
``A = J_1 J_2^T`` of two independent samples and the direction uses a third sample J_3 (the batch
split into three disjoint parts, ``samples_per_step = 3``).

The inner solver is the official code's: ``n_iter = 20`` steps of projected SGD with momentum
0.5 and step 10 on ``A / s^2`` (``s`` = mean of ``sqrt(max(A_tt, 0))``: scale invariance), the
momentum restarting and ``w`` warm-starting at every training step (``w`` is a buffer, 1/T at
first). The simplex projection is exact (float64). ``lambda = 0.3`` (the authors' experiments,
LibMTL and torchjd; the official class default 0.6 is overridden there).

Normalisation: ``s = mean_t sqrt(|A_tt|)`` (``max |A|`` if that is 0). With double sampling
``A_tt = g_t(z1) . g_t(z2)`` can be negative; LibMTL and torchjd clamp it to 0 and divide by
``s^2 + 1e-8``, so when every diagonal entry is negative (anti-correlated samples, measured in
the regime tests) the inner step becomes ~1e8 |A| and float64 loses the weights' differences
(weights 1/3 each instead of the exact 0.46 / 0.27 / 0.27). The official MTL code adds 1e-4
inside the square root instead (a bias for tasks with gradients below 1e-2). Where every
``A_tt >= 0`` and ``s >> 1e-4`` the three agree. Task heads get ``sum_t c_t L_t`` with the final
coefficients ``c = (w* + lambda w~) / (1 + lambda)``, which are reported.
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

_MOMENTUM = 0.5


def sdmgrad_inner(
    cross: np.ndarray, w: np.ndarray, lamda: float, n_iter: int, lr: float
) -> np.ndarray:
    """The official inner solver (see the module docstring); returns the new ``w``."""
    n = len(w)
    scale_sq = float(np.sqrt(np.abs(np.diag(cross))).mean()) ** 2
    if scale_sq == 0.0:
        scale_sq = float(np.abs(cross).max())
    if scale_sq == 0.0:  # every gradient zero: nothing to learn from
        return np.asarray(w, dtype=np.float64)
    a = cross / scale_sq
    target = np.full(n, lamda / n)
    velocity = np.zeros(n)
    for i in range(n_iter):
        grad = a @ (w + target)
        velocity = grad if i == 0 else _MOMENTUM * velocity + grad
        w = project_simplex(w - lr * velocity)
    return w


@register
class SDMGrad(Strategy):
    w: torch.Tensor  # buffer
    name = "sdmgrad"
    needs = GradientNeed.SHARED_PARAMETERS
    samples_per_step = 3
    gramian_blocks = ((0, 1),)  # J_1 J_2^T only
    update_samples = (2,)  # d = J_3^T (...)
    paper = "Xiao, Ban & Ji, NeurIPS 2023"
    summary = "min-norm direction pulled towards the mean gradient, double sampling"
    hparams = (
        HyperParam("lamda", 0.3, "pull towards the mean gradient", low=0.0, high=10.0),
        HyperParam(
            "n_iter",
            20,
            "inner projected-SGD steps per step",
            kind="int",
            low=1,
            high=1000,
            searchable=False,
        ),
        HyperParam(
            "inner_lr",
            10.0,
            "inner projected-SGD step size",
            low=1e-3,
            high=100.0,
            searchable=False,
        ),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.register_buffer(
            "w", torch.full((self.n_tasks,), 1.0 / self.n_tasks, dtype=torch.float64)
        )

    def coefficients(self, cross: np.ndarray) -> np.ndarray:
        lamda = float(self.config["lamda"])  # type: ignore[arg-type]
        w = sdmgrad_inner(
            cross,
            self.w.cpu().numpy(),
            lamda,
            int(self.config["n_iter"]),  # type: ignore[arg-type]
            float(self.config["inner_lr"]),  # type: ignore[arg-type]
        )
        self.w.copy_(torch.as_tensor(w, dtype=torch.float64))
        return (w + lamda / self.n_tasks) / (1.0 + lamda)

    def sample_gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> SampleWeights:
        n = self.n_tasks
        c = self.coefficients(gram.numpy()[0:n, n : 2 * n])
        shared = torch.zeros(3, n, dtype=torch.float32)
        shared[2] = torch.as_tensor(c, dtype=torch.float32)
        return SampleWeights(shared, shared[2].clone())
