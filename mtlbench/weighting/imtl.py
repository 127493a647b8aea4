"""Impartial Multi-Task Learning, IMTL (Liu et al., ICLR 2021): IMTL-H on the representation.

IMTL-G (gradient balance): with task gradients ``g_t`` w.r.t. the shared representation and
unit vectors ``u_t = g_t / ||g_t||``, find the combination ``d = sum_t a_t g_t`` with
``sum_t a_t = 1`` whose projections onto every ``u_t`` are equal. In Gramian form
``a = G^+ n / (1^T G^+ n)`` with ``n_t = ||g_t||`` (torchjd's ``IMTLGWeighting``, which also
covers linearly dependent rows through the pseudo-inverse; it equals the paper's closed form
when G has full rank).

IMTL-L (loss balance): learned scales ``s_t`` (initialised at 0); the scaled losses are
``exp(s_t) L_t`` and ``s`` descends ``sum_t (exp(s_t) L_t - s_t)`` (gradient ``exp(s_t) L_t - 1``),
so at equilibrium every scaled loss is 1. The scales have their own optimiser group
(``weight_lr``, default 0.025): the paper gives no lr for them and no official code was
released (LibMTL trains them with the network's optimiser); 0.025 is the learned-weight lr of
the Nash-MTL and FAMO official code. With Adam at the network's lr (3e-4) ``s`` moves ~0.1 in
300 steps, while the equilibrium ``s* = -log L_t`` is ~-2 for an L1 age loss of ~8 years.

IMTL-H (hybrid, the paper's best variant and the default, ``variant=hybrid``): IMTL-G applied to
the gradients of the scaled losses, so the effective weight of task t on the raw loss is
``a_t * exp(s_t)`` (reported). ``variant=gradient`` is IMTL-G alone on the representation.

Wrapped torchjd: ``IMTLGWeighting`` receives the Gramian in float64 (in float32 its answer was
100% off when gradient norms spanned 1e-3..1e3, and gave weights (-1, 2) instead of (0, 0) for
two opposite rows; in float64 it matches the closed form). A zero task gradient gets weight 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mtlbench.tasks import Task
from mtlbench.weighting._linalg import gramian
from mtlbench.weighting.base import (
    GradientCombination,
    GradientNeed,
    HyperParam,
    Strategy,
    weight_lr_param,
)
from mtlbench.weighting.registry import register


@register
class IMTL(Strategy):
    name = "imtl"
    needs = GradientNeed.REPRESENTATION
    paper = "Liu et al., ICLR 2021 (IMTL-H on the representation)"
    summary = "equal projections on unit task gradients + learned loss scales"
    hparams = (
        HyperParam(
            "variant",
            "hybrid",
            "hybrid = IMTL-H (IMTL-G + IMTL-L), gradient = IMTL-G only",
            kind="str",
            choices=("hybrid", "gradient"),
            searchable=False,
        ),
        weight_lr_param(0.025, "none published; the Nash-MTL/FAMO code's weight lr"),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.hybrid = self.config["variant"] == "hybrid"
        self.log_scales = nn.Parameter(torch.zeros(self.n_tasks), requires_grad=self.hybrid)
        from torchjd.aggregation import IMTLGWeighting  # lazy: 0.65 s, paid only when used

        self.solver = IMTLGWeighting()
        self.remember_learned_start()

    def combine_gradients(
        self,
        jacobian: torch.Tensor,
        losses: torch.Tensor,
        *,
        features: torch.Tensor | None = None,
    ) -> GradientCombination:
        scale = torch.exp(self.log_scales.detach()).double().cpu()
        gram = gramian(jacobian) * scale[:, None] * scale[None, :]
        alpha = self.solver(gram)
        weights = (alpha * scale).float().to(jacobian.device)
        aux = None
        if self.hybrid:
            s = self.log_scales
            aux = (torch.exp(s) * losses.detach().to(s) - s).sum()
        return GradientCombination(weights @ jacobian, weights, aux_loss=aux)

    def learned_weights(self) -> torch.Tensor | None:
        return torch.exp(self.log_scales.detach().float()) if self.hybrid else None
