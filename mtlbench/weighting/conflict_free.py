"""ConFIG, conflict-free inverse gradients (Liu, Chu, Thuerey et al., "ConFIG: Towards
Conflict-free Training of Physics Informed Neural Networks", ICLR 2025 / arXiv 2408.11104, eq. 2).

With unit task gradients ``u_t = g_t / ||g_t||`` (rows of ``U``):
``g_u = U^+ 1`` (the pseudo-inverse solution of ``U g = 1``: equal positive projection on every
unit gradient), ``e = g_u / ||g_u||`` and ``d = (sum_t g_t . e) e``. Everything follows from the
Gramian: with ``G_hat = D^-1 G D^-1`` (``D = diag ||g_t||``) and ``y = G_hat^+ 1``,
``g_u = U^T y``, ``||g_u||^2 = y^T G_hat y`` and ``sum_t g_t . g_u = 1^T D G_hat y``, so
``d = J^T a`` with ``a = D^-1 y (1^T D G_hat y) / (y^T G_hat y)``; the weights ``a`` are
reported. Solved in float64 on the unit Gramian (entries in [-1, 1], so norms that differ by
1e6 cost nothing). Zero task gradients get a zero unit row (as in the official code and
torchjd). Eigenvalues of ``G_hat`` below 1e-5 of the largest count as zero: the unit Gramian
of float32 gradients carries ~1e-7 of rounding, so an exactly rank-deficient Jacobian (U, V,
U+V) is treated as such rather than as a wildly ill-conditioned full-rank one.

Defaults: equal preference weights (the paper's ``1_m``); no hyperparameters. The registry
name is ``config`` (the paper's), the module ``conflict_free`` (``config`` is the package's
configuration module).
"""

from __future__ import annotations

import numpy as np
import torch

from mtlbench.weighting._simplex import psd_pinv, unit_gramian
from mtlbench.weighting.base import GradientNeed, Strategy
from mtlbench.weighting.registry import register

RCOND = 1e-5


def config_weights(gram: np.ndarray) -> np.ndarray:
    """ConFIG's ``a`` with ``d = J^T a`` from the float64 Gramian (see the module docstring)."""
    g = np.asarray(gram, dtype=np.float64)
    n = len(g)
    g_hat, norms = unit_gramian(g)
    y = psd_pinv(g_hat, RCOND) @ np.ones(n)
    sq = float(y @ g_hat @ y)
    if not sq > 0.0:  # every gradient zero
        return np.zeros(n)
    length = float(norms @ g_hat @ y)  # sum_t g_t . g_u
    inv = np.where(norms > 0.0, 1.0 / np.where(norms > 0.0, norms, 1.0), 0.0)
    return inv * y * (length / sq)


@register
class ConFIG(Strategy):
    name = "config"
    needs = GradientNeed.SHARED_PARAMETERS
    paper = "Liu, Chu, Thuerey et al., ConFIG, ICLR 2025 (arXiv 2408.11104)"
    summary = "pseudo-inverse of the unit gradients, scaled by the summed projections"
    weights_from_gramian = True

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(config_weights(gram.numpy()), dtype=torch.float32)
