"""Dual-Balancing Multi-Task Learning, DB-MTL (Lin et al., "Dual-Balancing for Multi-Task
Learning", 2023, arXiv:2308.12029).

* Loss-scale balancing: each task loss is replaced by ``log(L_t + eps)``, so the task gradient is
  ``g_t = grad L_t / (L_t + eps)``.
* Gradient-magnitude balancing on the shared parameters: an exponential moving average
  ``ghat_t <- beta_k * ghat_t + (1 - beta_k) * g_t`` with ``beta_k = beta / k^sigma`` (k the step,
  from 1; ``ghat`` starts at 0), then ``d = sum_t (max_k ||ghat_k|| / ||ghat_t||) * ghat_t``:
  every task's direction is scaled up to the largest task-gradient norm.

Defaults ``beta = 0.9``, ``sigma = 0`` (the authors' LibMTL implementation), ``eps = 1e-8``.
The gradient balancing needs every task's gradient of the shared parameters, so DB-MTL is a
``SHARED_PARAMETERS`` method (a loss-only variant would be just the log transform). Task heads
get ``grad log L_t``: the reported weight of task t is ``1 / (L_t + eps)``. The moving averages
(T x m floats, allocated on the first step) travel in ``state_dict`` as extra state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtlbench.tasks import Task
from mtlbench.weighting.base import GradientCombination, GradientNeed, HyperParam, Strategy
from mtlbench.weighting.registry import register

_EPS = 1e-8


@register
class DBMTL(Strategy):
    name = "db_mtl"
    needs = GradientNeed.SHARED_PARAMETERS
    paper = "Lin et al., Dual-Balancing for Multi-Task Learning, 2023"
    summary = "log losses + task gradients (EMA) rescaled to the largest norm"
    hparams = (
        HyperParam("beta", 0.9, "EMA factor of the task gradients", low=0.0, high=0.999),
        HyperParam("sigma", 0.0, "decay exponent: beta_k = beta / k^sigma", low=0.0, high=2.0),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.ema: torch.Tensor | None = None
        self.steps = 0

    def combine_gradients(
        self,
        jacobian: torch.Tensor,
        losses: torch.Tensor,
        *,
        features: torch.Tensor | None = None,
    ) -> GradientCombination:
        inv = 1.0 / (losses.detach().float().to(jacobian.device) + _EPS)
        self.steps += 1
        beta = float(self.config["beta"]) / self.steps ** float(self.config["sigma"])  # type: ignore[arg-type]
        if self.ema is None or self.ema.shape != jacobian.shape:
            self.ema = torch.zeros_like(jacobian)
        elif self.ema.device != jacobian.device:  # restored from a checkpoint on another device
            self.ema = self.ema.to(jacobian.device)
        # ghat <- beta ghat + (1 - beta) grad L / L, in place: no T x m temporary
        self.ema.mul_(beta).addcmul_(jacobian, ((1.0 - beta) * inv)[:, None])
        norms = torch.linalg.vector_norm(self.ema, dim=1)
        scale = norms.max() / (norms + _EPS)
        direction = scale @ self.ema
        return GradientCombination(direction, inv.detach())

    def get_extra_state(self) -> dict[str, Any]:
        return {"ema": self.ema, "steps": self.steps}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        ema = state["ema"]
        self.ema = None if ema is None else ema.detach().clone()  # never share the caller's
        self.steps = int(state["steps"])
