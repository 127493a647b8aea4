"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018).

Learned task weights ``w_t`` (initialised at 1). With ``W`` the weight of the last shared layer
(:func:`mtlbench.gradients.last_shared_layer`; for ResNet18 ``layer4.1.conv2.weight``):

* ``G_t = w_t * ||grad_W L_t||``, ``G_bar = mean_t G_t``;
* ``Ltilde_t = L_t / L_t(0)`` (``L_t(0)``: the losses of the first step), ``r_t = Ltilde_t /
  mean_k Ltilde_k``;
* ``L_grad = sum_t |G_t - G_bar * r_t^alpha|`` with the target ``G_bar * r_t^alpha`` held
  constant, differentiated w.r.t. the weights only (paper, Sec. 3.2).

The network descends ``sum_t w_t L_t`` (w held constant); the weights descend ``L_grad`` through
the trainer's optimiser in their own parameter group with lr ``weight_lr`` and no weight decay
(they are an ``nn.Parameter``, so they are checkpointed), and are renormalised to
``sum_t w_t = T`` after every update: the renormalisation runs at the start of the next step,
before the weights are used or reported, which is the same sequence of weights.
``alpha = 1.5`` (the paper's NYUv2 value). Guard not in the paper: a weight pushed to <= 0 by a
large step is clamped to 1e-6 before renormalising (a negative weight would maximise its task's
loss).

The per-task gradients w.r.t. ``W`` come from the gradient engine (need ``LAST_SHARED_LAYER``):
one batched backward that stops at ``W``, so the extra cost is the tail of the backbone.

``weight_lr`` default 0.025: the paper gives no lr for the weights and no official code was
released (LibMTL trains them with the network's optimiser and lr). 0.025 is the lr the Nash-MTL
and FAMO official code give learned weighting parameters; measured reason (test
``test_gradnorm_weights_move_toward_equal_rates``): with Adam at 0.025 the weights of a toy with
unequal training rates move by ~0.8 (from 1) within 50 steps in the direction GradNorm asks,
while at a network lr of 3e-4 they move by < 0.02 (the method is plain ``sum``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mtlbench.mtl.tasks import Task
from mtlbench.weighting.base import (
    GradientNeed,
    HyperParam,
    LossCombination,
    Strategy,
    weight_lr_param,
)
from mtlbench.weighting.registry import register

_MIN_WEIGHT = 1e-6


@register
class GradNorm(Strategy):
    initial_losses: torch.Tensor  # buffer
    has_initial: torch.Tensor  # buffer
    name = "gradnorm"
    needs = GradientNeed.LAST_SHARED_LAYER
    paper = "Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018"
    summary = "weights learned so task gradient norms follow relative training rates"
    hparams = (
        HyperParam(
            "alpha", 1.5, "asymmetry: strength of the pull towards common rates", low=0.0, high=5.0
        ),
        weight_lr_param(0.025, "none published; the Nash-MTL/FAMO code's weight lr (measured)"),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.loss_weights = nn.Parameter(torch.ones(self.n_tasks))
        self.register_buffer("initial_losses", torch.zeros(self.n_tasks))
        self.register_buffer("has_initial", torch.zeros((), dtype=torch.bool))
        self.remember_learned_start()

    @torch.no_grad()
    def _renormalise(self) -> None:
        w = self.loss_weights
        w.clamp_(min=_MIN_WEIGHT)
        w.mul_(self.n_tasks / w.sum())

    def combine_losses_with_gradients(
        self, losses: torch.Tensor, jacobian: torch.Tensor
    ) -> LossCombination:
        self._renormalise()
        current = losses.detach().float()
        if not bool(self.has_initial):
            self.initial_losses.copy_(current)
            self.has_initial.fill_(True)
        w = self.loss_weights
        # float32 is enough: torch's reductions sum pairwise; a float64 copy of the [T, 2.4M]
        # matrix cost 10 ms a step on ResNet18.
        norms = torch.linalg.vector_norm(jacobian.detach().float(), dim=1)
        g = w * norms
        g_bar = g.mean().detach()
        ratio = current / self.initial_losses.clamp_min(1e-12)
        rate = ratio / ratio.mean().clamp_min(1e-12)
        alpha = float(self.config["alpha"])  # type: ignore[arg-type]
        target = (g_bar * rate.pow(alpha)).detach()
        l_grad = (g - target).abs().sum()
        weights = w.detach().clone()
        loss = (weights.to(losses.dtype) * losses).sum()
        return LossCombination(loss, weights, aux_loss=l_grad)

    def learned_weights(self) -> torch.Tensor:
        w = self.loss_weights.detach().float().clamp(min=_MIN_WEIGHT)
        return w * (self.n_tasks / w.sum())
