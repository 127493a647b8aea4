"""Equal weighting with weights 1/T: ``L = (1/T) * sum_t L_t``.

The same direction as ``sum`` with every gradient divided by T (here 3): under SGD it is ``sum``
at a T times smaller learning rate, under Adam(W) it is nearly identical to ``sum``. It is kept
because several libraries call *this* "equal weighting" (EW in LibMTL, ``ls`` scaled by 1/T);
comparing both shows how much of a difference the convention makes after a learning-rate search.
"""

from __future__ import annotations

import torch

from mtlbench.weighting.base import GradientNeed, LossCombination, Strategy
from mtlbench.weighting.registry import register


@register
class Mean(Strategy):
    name = "mean"
    fixed_weights = True
    needs = GradientNeed.LOSSES
    paper = "equal weighting, 1/T convention (e.g. LibMTL's EW)"
    summary = "L = (1/T) sum_t L_t"

    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        weights = torch.full_like(losses, 1.0 / self.n_tasks).detach()
        return LossCombination((weights * losses).sum(), weights)
