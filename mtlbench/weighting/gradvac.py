"""Gradient Vaccine, GradVac (Wang, Tsvetkov, Firat & Cao, ICLR 2021), on the whole shared
parameter vector.

Each pair (i, j) keeps a target cosine ``phihat_ij`` (an EMA, initialised at 0). For each task i,
in a random order over the other tasks j, with ``phi = cos(g_i^GV, g_j)`` (``g_j`` original):
if ``phi < phihat_ij``,
``g_i^GV <- g_i^GV + ||g_i^GV|| (phihat sqrt(1 - phi^2) - phi sqrt(1 - phihat^2))
/ (||g_j|| sqrt(1 - phihat^2)) * g_j``;
then ``phihat_ij <- (1 - beta) phihat_ij + beta phi``. The update is ``d = sum_i g_i^GV``. With
``phihat = 0`` the correction is exactly PCGrad's projection.

Defaults: ``beta = 0.01`` (the paper's EMA rate; LibMTL and torchjd default to 0.5), one group =
the whole shared parameter vector (the paper also studies per-layer groups). Like PCGrad it runs
on the float64 Gramian (``g_i^GV = sum_k C_ik g_k``), reports ``a = C^T 1`` and draws the orders
from its own seeded generator: torchjd's ``GradVacWeighting`` draws them from the global RNG (the
same reason as for PCGrad; measured: 8 global seeds, 4 different updates, up to 83% apart).
Guards not in the paper: pairs with a zero gradient are skipped (cosine undefined), also when
``g_i^GV`` has become zero up to round-off (1e-6 of ``sum_k |C_ik| ||g_k||``: a correction
against a parallel, opposite ``g_j`` cancels it exactly, and the cosine of the remaining noise
would drive the EMA), and no correction is made when ``|phihat| = 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtlbench.tasks import Task
from mtlbench.weighting.base import GradientNeed, HyperParam, RandomStrategy
from mtlbench.weighting.registry import register

# ||g_i'|| comes from a quadratic form of the Gramian: cancellation leaves sqrt(eps) ~ 1e-8
_CANCELLED = 1e-6
_PARALLEL = 1e-12


def gradvac_weights(
    gram: np.ndarray, targets: np.ndarray, orders: list[list[int]], beta: float
) -> np.ndarray:
    """Effective weights of GradVac; updates ``targets`` (phihat, [T, T]) in place."""
    n = len(gram)
    weights = np.zeros(n)
    for i in range(n):
        coef = np.zeros(n)
        coef[i] = 1.0
        for j in orders[i]:
            norm_i = math.sqrt(max(float(coef @ gram @ coef), 0.0))
            norm_j = math.sqrt(max(float(gram[j, j]), 0.0))
            # g_i' = 0 up to the round-off of its own cancellation (an earlier correction
            # against a parallel g_k removed it): its cosine is undefined, as for a zero row
            size = float(np.abs(coef) @ np.sqrt(np.clip(np.diag(gram), 0.0, None)))
            if norm_i <= _CANCELLED * size or norm_j == 0.0:
                continue
            phi = float(coef @ gram[:, j]) / (norm_i * norm_j)
            # parallel up to round-off: exactly +-1, so that a correction against an opposite
            # g_j cancels g_i' to round-off (sqrt(1 - phi^2) would amplify 1e-16 to 1e-8)
            phi = math.copysign(1.0, phi) if abs(phi) > 1.0 - _PARALLEL else phi
            target = float(targets[i, j])
            root_target = math.sqrt(max(1.0 - target * target, 0.0))
            if phi < target and root_target > 0.0:
                root_phi = math.sqrt(max(1.0 - phi * phi, 0.0))
                coef[j] += norm_i * (target * root_phi - phi * root_target) / (norm_j * root_target)
            targets[i, j] = (1.0 - beta) * target + beta * phi
        weights += coef
    return weights


@register
class GradVac(RandomStrategy):
    targets: torch.Tensor  # buffer
    name = "gradvac"
    needs = GradientNeed.SHARED_PARAMETERS
    paper = "Wang, Tsvetkov, Firat & Cao, ICLR 2021"
    summary = "raise pairwise gradient cosines towards their running targets"
    weights_from_gramian = True
    hparams = (
        HyperParam("beta", 0.01, "EMA rate of the target cosines", low=1e-4, high=1.0, log=True),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.register_buffer(
            "targets", torch.zeros(self.n_tasks, self.n_tasks, dtype=torch.float64)
        )

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        orders = self.draw_orders()
        targets = self.targets.cpu().numpy().copy()
        beta = float(self.config["beta"])  # type: ignore[arg-type]
        values = gradvac_weights(gram.numpy(), targets, orders, beta)
        self.targets.copy_(torch.as_tensor(targets))
        return torch.as_tensor(values, dtype=torch.float32)
