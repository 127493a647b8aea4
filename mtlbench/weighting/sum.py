"""Equal weighting: ``L = sum_t L_t`` (weights 1, not 1/T).

Weights of 1 keep the effective learning rate of each task what it would be if trained alone;
the ``mean`` strategy (1/T) divides every gradient by T, which a learning-rate search absorbs.
"""

from __future__ import annotations

import torch

from mtlbench.weighting.base import GradientNeed, LossCombination, Strategy
from mtlbench.weighting.registry import register


@register
class Sum(Strategy):
    name = "sum"
    fixed_weights = True
    needs = GradientNeed.LOSSES
    paper = "equal weighting (the tutorial's plain sum)"
    summary = "L = sum_t L_t, every weight 1"

    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        return LossCombination(losses.sum(), torch.ones_like(losses).detach())
