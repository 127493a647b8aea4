"""Dual-Balancing Multi-Task Learning, DB-MTL (Lin et al., "Dual-Balancing for Multi-Task
Learning", 2023, arXiv:2308.12029).

* Loss-scale balancing: each task loss is replaced by ``log(L_t + eps)``, so the task gradient is
  ``g_t = grad L_t / (L_t + eps)``.
* Gradient-magnitude balancing on the shared parameters: an exponential moving average
  ``ghat_t <- beta_k * ghat_t + (1 - beta_k) * g_t`` with ``beta_k = beta / k^sigma`` (k the step,
  from 1; ``ghat`` starts at 0), then ``d = sum_t (max_k ||ghat_k|| / ||ghat_t||) * ghat_t``:
  every task's direction is scaled up to the largest task-gradient norm (exactly: a zero average
gets factor 0; LibMTL divides by ``||ghat_t|| + 1e-8``, 1% off for a norm of 1e-6).

Defaults ``beta = 0.9``, ``sigma = 0`` (the authors' LibMTL implementation), ``eps = 1e-8``.
The gradient balancing needs every task's gradient of the shared parameters, so DB-MTL is a
``SHARED_PARAMETERS`` method (a loss-only variant would be just the log transform). Task heads
get ``grad log L_t``: the reported weight of task t is ``1 / (L_t + eps)``. The moving averages
(one ``[T, m]`` float32 buffer, allocated on the first step and updated in place through
per-parameter views) travel in ``state_dict`` as extra state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtlbench.tasks import Task
from mtlbench.weighting.base import GradientNeed, HyperParam, Strategy
from mtlbench.weighting.registry import register

_EPS = 1e-8


@register
class DBMTL(Strategy):
    name = "db_mtl"
    needs = GradientNeed.SHARED_PARAMETERS
    gradients_per_parameter = True
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

    def combine_parameter_gradients(
        self, rows: Sequence[Sequence[torch.Tensor]], losses: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        inv = (1.0 / (losses.detach().double().cpu() + _EPS)).tolist()
        self.steps += 1
        beta = float(self.config["beta"]) / self.steps ** float(self.config["sigma"])  # type: ignore[arg-type]
        sizes = [g.numel() for g in rows[0]]
        device = rows[0][0].device
        shape = (self.n_tasks, sum(sizes))
        if self.ema is None or tuple(self.ema.shape) != shape:
            self.ema = torch.zeros(shape, device=device)
        elif self.ema.device != device:  # restored from a checkpoint on another device
            self.ema = self.ema.to(device)
        # One contiguous [T, m] buffer (what the checkpoint holds), updated through per-parameter
        # views with foreach kernels: no [T, m] temporary, no concatenation of the gradients.
        views = [
            [v.view_as(g) for v, g in zip(self.ema[t].split(sizes), rows[t], strict=True)]
            for t in range(self.n_tasks)
        ]
        grads = [g for row in rows for g in row]
        torch._foreach_mul_(grads, [inv[t] for t in range(self.n_tasks) for _ in sizes])
        # ghat <- beta ghat + (1 - beta) grad L / L
        torch._foreach_lerp_([v for row in views for v in row], grads, 1.0 - beta)
        norms = torch.linalg.vector_norm(self.ema, dim=1)
        # exact ratio, 0 for a zero average (LibMTL adds 1e-8 to the norm: 1% off at 1e-6)
        norms64 = norms.double().cpu()
        scale = torch.where(norms64 > 0, norms64.max() / norms64, 0.0).tolist()
        # Task 0's gradient tensors are spent (already in the average): the update is written
        # into them, since fresh 40 MB buffers cost page faults on every step on the CPU.
        direction = list(rows[0])
        for out, view in zip(direction, views[0], strict=True):
            torch.mul(view, scale[0], out=out)
        for t in range(1, self.n_tasks):
            torch._foreach_add_(direction, views[t], alpha=scale[t])
        return direction, torch.tensor(inv, dtype=torch.float32, device=device)

    def get_extra_state(self) -> dict[str, Any]:
        return {"ema": self.ema, "steps": self.steps}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        ema = state["ema"]
        self.ema = None if ema is None else ema.detach().clone()  # never share the caller's
        self.steps = int(state["steps"])
