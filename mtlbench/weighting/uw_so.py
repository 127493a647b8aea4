"""UW-SO, soft optimal uncertainty weighting (Kirchdorfer, Elich, Kutsche, Stuckenschmidt,
Schott & Koehler, "Analytical Uncertainty-Based Loss Weighting in Multi-Task Learning", 2024,
arXiv 2408.07985).

Minimising Kendall et al.'s uncertainty objective over ``sigma_t`` in closed form gives weights
inversely proportional to the task losses (for an L1 loss ``sigma_t = L_t`` exactly); UW-SO
normalises these analytically optimal weights with a softmax of temperature ``tau``:
``w_t = exp(1 / (tau L_t)) / sum_k exp(1 / (tau L_k))`` computed from the *detached* batch
losses, and the network descends ``sum_t w_t L_t``. Weights sum to 1 (the paper's softmax).

``tau`` is the method's only hyperparameter; the paper tunes it per dataset and architecture and
gives no universal default, so the default here is ``tau = 1`` and the Optuna space spans
0.01..100 on a log scale. Losses are floored at 1e-12 before the reciprocal (a zero loss would
otherwise overflow); the softmax is shifted by its maximum (exact, overflow-free).
"""

from __future__ import annotations

import torch

from mtlbench.weighting.base import GradientNeed, HyperParam, LossCombination, Strategy
from mtlbench.weighting.registry import register

_FLOOR = 1e-12


@register
class UWSO(Strategy):
    name = "uw_so"
    needs = GradientNeed.LOSSES
    paper = "Kirchdorfer et al., Analytical Uncertainty-Based Loss Weighting in MTL, 2024"
    summary = "softmax of inverse losses with temperature (analytical uncertainty weights)"
    hparams = (HyperParam("tau", 1.0, "softmax temperature", low=0.01, high=100.0, log=True),)

    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        tau = float(self.config["tau"])  # type: ignore[arg-type]
        inverse = 1.0 / losses.detach().double().clamp_min(_FLOOR)
        weights = torch.softmax(inverse / tau, dim=0).to(losses.dtype)
        return LossCombination((weights * losses).sum(), weights.detach())
