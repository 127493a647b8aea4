"""ExcessMTL (He, Zhou, Zhao & Zhao, "Robust Multi-Task Learning with Excess Risks",
ICML 2024).

Tasks are weighted by their estimated *excess* risk (distance to their own optimum), not their
loss, so a task with large irreducible noise does not take over. With task gradient ``g_t`` on
the shared parameters and ``S_t`` the running sum of its squared entries (AdaGrad's diagonal
preconditioner, a second-order Taylor model of the loss, paper eq. 6-7), the excess-risk
estimate is ``r_t = g_t^T diag(S_t + 1e-7)^(-1/2) g_t`` (``S_t`` updated first). The first step
fixes ``r_t^0``; from the second step on the weights take an exponentiated-gradient step (eq. 9)
``w_t <- w_t exp(eta r_t / r_t^0)`` and are renormalised onto the simplex; the network follows
``d = sum_t w_t g_t`` (heads: ``sum_t w_t L_t``).

Defaults: ``eta = robust_step_size = 0.01`` (official code and LibMTL). Weights start at 1/T and
sum to 1 as in the paper (the official code and LibMTL start at 1 and sum to T: the same
direction at T times the learning rate). A task whose first-step estimate is 0 (zero gradient)
gets ratio 0 (no excess risk measurable). The update runs in log space (a ratio of 1e8, from a
tiny first-step estimate, overflows ``exp`` into NaN weights in the official form), and the state
is the log-weights: stored as weights, a task pushed to exp(-15600) of the leader underflows to
exactly 0 and can never come back, while the exact recursion brings it back as soon as its own
ratio is larger (found by the 60-digit reference on norms spanning 1e-3..1e5, T = 6). The
squared-gradient sums are one ``[T, m]`` float32 buffer (extra state, checkpointed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtlbench.mtl.tasks import Task
from mtlbench.weighting.base import GradientNeed, HyperParam, Strategy
from mtlbench.weighting.moco import flat_views, state_buffer
from mtlbench.weighting.registry import register

_DELTA = 1e-7


@register
class ExcessMTL(Strategy):
    log_weights: torch.Tensor  # buffer: log w_t up to a constant (max 0)
    initial_risk: torch.Tensor  # buffer
    name = "excess_mtl"
    needs = GradientNeed.SHARED_PARAMETERS
    gradients_per_parameter = True
    paper = "He, Zhou, Zhao & Zhao, Robust Multi-Task Learning with Excess Risks, ICML 2024"
    summary = "exponentiated weights from AdaGrad-preconditioned excess-risk estimates"
    hparams = (
        HyperParam(
            "robust_step_size",
            0.01,
            "step size eta of the exponentiated update",
            low=1e-4,
            high=10.0,
            log=True,
        ),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        n = self.n_tasks
        self.register_buffer("log_weights", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("initial_risk", torch.full((n,), -1.0, dtype=torch.float64))
        self.sq_sum: torch.Tensor | None = None

    def combine_parameter_gradients(
        self, rows: Sequence[Sequence[torch.Tensor]], losses: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        n = self.n_tasks
        self.sq_sum = state_buffer(self.sq_sum, rows)
        views = flat_views(self.sq_sum, rows)
        risk = np.zeros(n)
        for t in range(n):
            torch._foreach_addcmul_(views[t], list(rows[t]), list(rows[t]))
            total = torch.zeros((), dtype=torch.float64, device=rows[t][0].device)
            for g, s in zip(rows[t], views[t], strict=True):
                total += (g * g / torch.sqrt(s + _DELTA)).sum(dtype=torch.float64)
            risk[t] = float(total)
        if float(self.initial_risk[0]) < 0.0:  # first step: the reference risks
            self.initial_risk.copy_(torch.as_tensor(risk, dtype=torch.float64))
        else:
            r0 = self.initial_risk.cpu().numpy()
            ratio = np.where(r0 > 0.0, risk / np.where(r0 > 0.0, r0, 1.0), 0.0)
            eta = float(self.config["robust_step_size"])  # type: ignore[arg-type]
            logits = self.log_weights.cpu().numpy() + eta * ratio
            self.log_weights.copy_(torch.as_tensor(logits - logits.max(), dtype=torch.float64))
        logits = self.log_weights.cpu().numpy()
        new = np.exp(logits - logits.max())
        w = (new / new.sum()).tolist()
        direction = list(rows[0])
        torch._foreach_mul_(direction, w[0])
        for t in range(1, n):
            torch._foreach_add_(direction, list(rows[t]), alpha=w[t])
        return direction, torch.tensor(w, dtype=torch.float32, device=rows[0][0].device)

    def get_extra_state(self) -> dict[str, Any]:
        return {"sq_sum": self.sq_sum}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        sq = state["sq_sum"]
        self.sq_sum = None if sq is None else sq.detach().clone()
