"""DualProj: the mean gradient projected onto the dual cone of the task gradients.

Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning", NeurIPS 2017 (GEM,
eq. 10-11), as an aggregator in torchjd (``DualProj``). The update is
``d = argmin_{d} ||d - g_mean||^2  s.t.  g_t . d >= 0 for every task t``, with
``g_mean = (1/T) sum_t g_t``: the closest direction to the mean that conflicts with no task.
GEM's dual (eq. 11) gives ``d = J^T v`` with ``v = argmin_{v >= u} v^T G v``, ``u = 1/T``
(``G = J J^T``), solved here exactly in float64 by face enumeration
(:func:`mtlbench.weighting._linalg.dual_cone_weights`, the solver UPGrad uses). Weights ``v``
are reported (they sum to >= 1; exactly 1 when no task conflicts with the mean). No
hyperparameters: torchjd's default preference vector is the mean (1/T).

Native weights instead of torchjd's ``DualProjWeighting``: its default projector (quadprog, via
qpsolvers; dev dependencies here, for the peer test only) adds ``1e-4 I`` to the trace-normalised
Gramian. Measured: rows ``1e-3 u`` and ``1e3 (-u/2 + v)`` give weights (0.5, 0.5), 50% off the
exact projection and conflicting with task 0; opposite rows ``u, -2u`` give ``-5e-4 u`` instead
of 0. Where norms are comparable the two agree (tests; ``docs/strategies.md``).
"""

from __future__ import annotations

import numpy as np
import torch

from mtlbench.weighting._linalg import dual_cone_weights
from mtlbench.weighting.base import GradientNeed, Strategy
from mtlbench.weighting.registry import register


@register
class DualProj(Strategy):
    name = "dualproj"
    needs = GradientNeed.SHARED_PARAMETERS
    paper = "Lopez-Paz & Ranzato, NeurIPS 2017 (GEM projection, as aggregated in torchjd)"
    summary = "mean gradient projected onto the dual cone of the task gradients"
    weights_from_gramian = True

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        u = np.full(self.n_tasks, 1.0 / self.n_tasks)
        return torch.as_tensor(dual_cone_weights(gram.numpy(), u), dtype=torch.float32)
