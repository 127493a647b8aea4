"""Fast Adaptive Multitask Optimization, FAMO (Liu, Feng, Stone & Liu, NeurIPS 2023, Alg. 1).

Task logits ``xi`` (initialised at 0) give ``z = softmax(xi)``. The network follows
``d = c * sum_t (z_t / L_t) * grad L_t`` with ``c = (sum_t z_t / L_t)^-1``, i.e. it descends
``sum_t c * z_t * log L_t`` with ``c`` and ``z`` held constant, so the effective (reported) weight
of task t is ``z_t / (c * L_t)`` (they sum to 1). After the optimiser step the strategy receives
the losses on the same batch, ``delta_t = log L_t(before) - log L_t(after)``, and updates the
logits with the gradient ``J_softmax(xi)^T delta + gamma * xi`` through Adam with step size
``beta`` (the paper's choice of optimiser for the logits).

Defaults: ``beta = 0.025`` (paper and official code); decay ``gamma = 0.01``. Public defaults for
gamma differ (0.01 in the official code's argument parser and its CelebA script, 0.001 in its QM9
script, 1e-5 elsewhere); 0.01 is the official default and the setting of the paper's CelebA
experiment (face attributes, the closest benchmark to UTKFace). Losses are offset by 1e-8 before
the log (lower bound of every loss here is 0). The logits and the Adam moments are buffers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtlbench.mtl.tasks import Task
from mtlbench.weighting.base import GradientNeed, HyperParam, LossCombination, Strategy
from mtlbench.weighting.registry import register

_EPS = 1e-8
_BETAS = (0.9, 0.999)


@register
class FAMO(Strategy):
    logits: torch.Tensor  # buffer
    adam_m: torch.Tensor  # buffer
    adam_v: torch.Tensor  # buffer
    adam_step: torch.Tensor  # buffer
    name = "famo"
    needs = GradientNeed.LOSSES
    needs_losses_after_step = True
    paper = "Liu, Feng, Stone & Liu, NeurIPS 2023"
    summary = "softmax logits learned from the per-step log-loss decrease"
    hparams = (
        HyperParam(
            "beta", 0.025, "step size of the task logits (Adam)", low=1e-5, high=1.0, log=True
        ),
        HyperParam("gamma", 0.01, "decay of the task logits", low=0.0, high=1.0),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        n = self.n_tasks
        self.register_buffer("logits", torch.zeros(n))
        self.register_buffer("adam_m", torch.zeros(n))
        self.register_buffer("adam_v", torch.zeros(n))
        self.register_buffer("adam_step", torch.zeros((), dtype=torch.long))

    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        z = torch.softmax(self.logits, dim=0).to(losses.dtype)
        shifted = losses + _EPS
        c = 1.0 / (z / shifted.detach()).sum()
        loss = (c * z * torch.log(shifted)).sum()
        weights = (c * z / shifted).detach()
        return LossCombination(loss, weights)

    def after_step(self, losses_before: torch.Tensor, losses_after: torch.Tensor) -> None:
        delta = torch.log(losses_before.float() + _EPS) - torch.log(losses_after.float() + _EPS)
        delta = delta.to(self.logits.device)
        z = torch.softmax(self.logits, dim=0)
        # J_softmax^T delta = z * (delta - <z, delta>)
        grad = z * (delta - (z * delta).sum())
        grad = grad + float(self.config["gamma"]) * self.logits  # type: ignore[arg-type]
        self._adam(grad)

    @torch.no_grad()
    def _adam(self, grad: torch.Tensor) -> None:
        b1, b2 = _BETAS
        self.adam_step += 1
        step = int(self.adam_step)
        self.adam_m.mul_(b1).add_(grad, alpha=1 - b1)
        self.adam_v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        m_hat = self.adam_m / (1 - b1**step)
        v_hat = self.adam_v / (1 - b2**step)
        lr = float(self.config["beta"])  # type: ignore[arg-type]
        self.logits.sub_(lr * m_hat / (v_hat.sqrt() + _EPS))
