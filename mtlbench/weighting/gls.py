"""Geometric loss strategy, GLS (Chennupati et al., "MultiNet++", CVPR Workshops 2019).

``L = (prod_t L_t) ^ (1/T)``, the geometric mean of the task losses. Its gradient is
``sum_t (L / (T * L_t)) * grad L_t``, so the effective weight of task t is ``L / (T * L_t)``:
tasks with small losses get large weights, which makes the objective invariant to each loss's
scale. That effective weight is what is reported. Computed as ``exp(mean_t log L_t)`` for
stability; losses are clamped at 1e-12 (from below) so a task with zero loss cannot make the
objective and its gradient undefined.
"""

from __future__ import annotations

import torch

from mtlbench.weighting.base import GradientNeed, LossCombination, Strategy
from mtlbench.weighting.registry import register

_FLOOR = 1e-12


@register
class GeometricLoss(Strategy):
    name = "gls"
    needs = GradientNeed.LOSSES
    paper = "Chennupati et al., MultiNet++, CVPR Workshops 2019"
    summary = "L = (prod_t L_t)^(1/T)"

    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        clamped = losses.clamp_min(_FLOOR)
        loss = torch.exp(torch.log(clamped).mean())
        weights = (loss / (self.n_tasks * clamped)).detach()
        return LossCombination(loss, weights)
