"""MGDA (Desideri 2012; Sener & Koltun, NeurIPS 2018) on the shared parameters.

The update is the min-norm point of the convex hull of the task gradients:
``a* = argmin_{a in simplex} ||sum_t a_t g_t||^2 = argmin a^T G a`` with ``G = J J^T``, and
``d = J^T a*``. If it is non-zero it decreases every task loss (``g_t . d >= ||d||^2 > 0``); if
it is zero the point is Pareto-stationary. Weights sum to 1 (the paper's convention).

Native, not torchjd's ``MGDA``: that one runs the paper's Frank-Wolfe loop with early stopping
(epsilon 1e-3) and, measured on our awkward cases, lands 0.26% (T = 3 generic), 0.67% (exact
rank deficiency) and 9% (norms 1e-3 / 1 / 1e3) away from the exact min-norm point, in float32
and float64 alike. Here the T x T problem is solved exactly in float64
(:func:`mtlbench.weighting._linalg.min_norm_weights`). No gradient normalisation (the paper's
algorithm has none; its code offers l2/loss variants).
"""

from __future__ import annotations

import torch

from mtlbench.weighting._linalg import min_norm_weights
from mtlbench.weighting.base import GradientNeed, Strategy
from mtlbench.weighting.registry import register


@register
class MGDA(Strategy):
    name = "mgda"
    needs = GradientNeed.SHARED_PARAMETERS
    paper = "Sener & Koltun, NeurIPS 2018 (Desideri 2012)"
    summary = "min-norm point of the convex hull of task gradients (exact, float64)"
    weights_from_gramian = True

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(min_norm_weights(gram.numpy()), dtype=torch.float32)
