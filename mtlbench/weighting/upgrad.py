"""UPGrad (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024).

Each task gradient is projected onto the dual cone of all task gradients (the set of directions
that conflict with none of them) and the projections are averaged:
``d = (1/T) sum_i pi_J(g_i)``. With ``G = J J^T``, ``pi_J(J^T u) = J^T v`` where
``v = argmin_{v >= u} v^T G v`` (the paper's Proposition 1), so the weights are
``a = sum_i v_i`` for ``u = e_i / T``. Weights follow the paper's 1/T (mean) convention; ``d``
never conflicts with any task gradient (``g_t . d >= 0``).

Wrapped torchjd: ``UPGradWeighting`` with our own ``DualConeProjector``. torchjd's default
projector needs ``quadprog``/``qpsolvers`` (not dependencies of this project; the call raises
ImportError, measured with torchjd 0.18 here); its source also adds 1e-4 * I to the normalised
Gramian, a bias when gradient norms differ by orders of magnitude. Ours solves each small QP
exactly in float64 by face enumeration (:func:`mtlbench.weighting._linalg.dual_cone_weights`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtlbench.mtl.tasks import Task
from mtlbench.weighting._linalg import dual_cone_weights
from mtlbench.weighting.base import GradientNeed, Strategy
from mtlbench.weighting.registry import register


@functools.cache
def _exact_projector_class() -> type:
    """torchjd's projector interface, solved exactly in float64 (see module docstring).

    Built on first use: importing torchjd (it imports cvxpy) takes 0.65 s, which every process
    would pay when the registry loads, used or not."""
    from torchjd.linalg import DualConeProjector

    class ExactDualConeProjector(DualConeProjector):
        def __call__(self, U: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
            gram = G.detach().double().cpu().numpy()
            rows = U.detach().double().cpu().numpy().reshape(-1, gram.shape[0])
            out = np.stack([dual_cone_weights(gram, u) for u in rows]).reshape(U.shape)
            return torch.as_tensor(out, dtype=G.dtype, device=G.device)

    return ExactDualConeProjector


@register
class UPGrad(Strategy):
    name = "upgrad"
    needs = GradientNeed.SHARED_PARAMETERS
    paper = "Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024"
    summary = "mean of the task gradients projected onto the dual cone"
    weights_from_gramian = True

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        from torchjd.aggregation import UPGradWeighting  # lazy: see _exact_projector_class

        self.solver = UPGradWeighting(projector=_exact_projector_class()())

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        return self.solver(gram).float()
