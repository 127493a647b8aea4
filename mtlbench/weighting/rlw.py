"""Random loss weighting, RLW (Lin et al., "Reasonable Effectiveness of Random Weighting",
TMLR 2022).

Each step draws ``lambda ~ N(0, I_T)`` and uses ``w = softmax(lambda)``, so the weights are
positive and sum to 1 (the paper's convention; ``sum``'s weights sum to T, a constant factor a
learning-rate search absorbs). ``L = sum_t w_t L_t``. The draws come from the strategy's own
generator seeded by the run's seed, checkpointed with the strategy, never the global RNG.
"""

from __future__ import annotations

import torch

from mtlbench.weighting.base import GradientNeed, LossCombination, RandomStrategy
from mtlbench.weighting.registry import register


@register
class RandomLossWeighting(RandomStrategy):
    name = "rlw"
    needs = GradientNeed.LOSSES
    paper = "Lin et al., TMLR 2022"
    summary = "w = softmax(N(0, I)) drawn every step"

    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        draw = torch.randn(self.n_tasks, generator=self.generator, dtype=torch.float32)
        weights = torch.softmax(draw, dim=0).to(device=losses.device, dtype=losses.dtype)
        return LossCombination((weights * losses).sum(), weights.detach())
