"""PCGrad, gradient surgery (Yu et al., NeurIPS 2020, Algorithm 1), on the shared parameters.

For each task i, in a random order over the other tasks j: if ``g_i^PC . g_j < 0`` (``g_j`` the
original gradient), ``g_i^PC <- g_i^PC - (g_i^PC . g_j / ||g_j||^2) g_j``. The update is
``d = sum_i g_i^PC``: the plain sum when no pair conflicts (sum convention, weights 1).

Every ``g_i^PC`` stays a combination of the original rows, ``g_i^PC = sum_k C_ik g_k``, so the
whole procedure runs on the T x T Gramian in float64 and the effective weights ``a = C^T 1`` are
reported (``d = J^T a``). The random orders come from the strategy's generator (seeded by the
run's seed, checkpointed): with T >= 3 and conflicting gradients the result depends on the order.

Native, not torchjd's ``PCGradWeighting``: that one draws the orders from the global torch RNG
(``torch.randperm`` without a generator), so a run cannot be reproduced from its own seed, the
state is not checkpointed with the strategy, and any other draw from the global RNG (data
shuffling, dropout) changes the orders. Measured on one conflicting 3-task Jacobian: 8 global
seeds gave 6 different updates, up to 44% apart. Zero rows are skipped (nothing to project on).
"""

from __future__ import annotations

import numpy as np
import torch

from mtlbench.weighting.base import GradientNeed, RandomStrategy
from mtlbench.weighting.registry import register


def pcgrad_weights(gram: np.ndarray, orders: list[list[int]]) -> np.ndarray:
    """Effective weights of PCGrad for the Gramian ``gram`` and, per task i, the order in
    which the other tasks are visited."""
    n = len(gram)
    weights = np.zeros(n)
    for i in range(n):
        coef = np.zeros(n)
        coef[i] = 1.0
        for j in orders[i]:
            dot = float(coef @ gram[:, j])
            if dot < 0.0 and gram[j, j] > 0.0:
                coef[j] -= dot / gram[j, j]
        weights += coef
    return weights


@register
class PCGrad(RandomStrategy):
    name = "pcgrad"
    needs = GradientNeed.SHARED_PARAMETERS
    paper = "Yu et al., NeurIPS 2020"
    summary = "project conflicting gradients onto each other's normal plane, then sum"
    weights_from_gramian = True

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        values = pcgrad_weights(gram.numpy(), self.draw_orders())
        return torch.as_tensor(values, dtype=torch.float32)
