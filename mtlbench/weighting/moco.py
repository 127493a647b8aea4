"""MoCo, multi-objective gradient correction (Fernando, Shen, Liu, Chaudhury, Murugesan & Chen,
"Mitigating Gradient Bias in Multi-objective Learning: A Provably Convergent Approach",
ICLR 2023, Algorithm 1).

Stochastic MGDA weights are biased; MoCo tracks each task gradient with a moving average and
runs MGDA on the tracked gradients. With step k = 1, 2, ... and ``h_t`` the task gradient:

* ``y_t <- y_t - beta_k (y_t - h_t)``                         (tracking, ``y_t = 0`` at first)
* ``lambda <- Proj_simplex(lambda - gamma_k (Y Y^T + rho I) lambda)``  (``lambda = 1/T`` first)
* ``d = Y^T lambda``

with ``beta_k = beta / k^beta_sigma`` and ``gamma_k = gamma / k^gamma_sigma``. Defaults
``beta = 0.5, beta_sigma = 0.5, gamma = 0.1, gamma_sigma = 0.5, rho = 0`` (the authors' code, as
shared with LibMTL). The authors' multi-task code rescales each task gradient to the length of
its loss, ``h_t = L_t g_t / ||g_t||`` (the paper is silent on this; without it the raw gradient
scales of an L1 age loss in years make ``gamma`` meaningless), the default here;
``normalise=none`` uses the raw gradients. LibMTL replaces the simplex projection by a softmax;
we keep the paper's projection (exact, float64). ``Y Y^T`` is accumulated in float64. The
tracked gradients are one ``[T, m]`` float32 buffer (extra state, checkpointed), so MoCo's
memory grows by T copies of the shared parameters. Reported weights: ``lambda``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtlbench.mtl.tasks import Task
from mtlbench.weighting._linalg import gramian
from mtlbench.weighting._simplex import project_simplex
from mtlbench.weighting.base import GradientNeed, HyperParam, Strategy
from mtlbench.weighting.registry import register

_EPS = 1e-8


def row_norms(rows: Sequence[Sequence[torch.Tensor]]) -> list[float]:
    """Euclidean norm of each task's gradient over all parameters (float64 sum of squares)."""
    out = []
    for row in rows:
        parts = torch._foreach_norm(list(row))
        out.append(float(torch.stack(parts).double().pow(2).sum().sqrt()))
    return out


def flat_views(
    buffer: torch.Tensor, rows: Sequence[Sequence[torch.Tensor]]
) -> list[list[torch.Tensor]]:
    """Per-parameter views of a ``[T, m]`` buffer, shaped like the gradients in ``rows``."""
    sizes = [g.numel() for g in rows[0]]
    return [
        [v.view_as(g) for v, g in zip(buffer[t].split(sizes), rows[t], strict=True)]
        for t in range(len(rows))
    ]


def state_buffer(
    current: torch.Tensor | None, rows: Sequence[Sequence[torch.Tensor]]
) -> torch.Tensor:
    """A zero ``[T, m]`` buffer on the gradients' device unless ``current`` already is one."""
    shape = (len(rows), sum(g.numel() for g in rows[0]))
    device = rows[0][0].device
    if current is None or tuple(current.shape) != shape:
        return torch.zeros(shape, device=device)
    return current if current.device == device else current.to(device)


@register
class MoCo(Strategy):
    lambd: torch.Tensor  # buffer
    name = "moco"
    needs = GradientNeed.SHARED_PARAMETERS
    gradients_per_parameter = True
    paper = "Fernando, Shen, Liu, Chaudhury, Murugesan & Chen, ICLR 2023"
    summary = "MGDA weights on moving averages of the task gradients"
    hparams = (
        HyperParam("beta", 0.5, "step size of the gradient tracking", low=1e-3, high=1.0),
        HyperParam(
            "beta_sigma", 0.5, "decay exponent of beta", low=0.0, high=1.0, searchable=False
        ),
        HyperParam("gamma", 0.1, "step size of the task weights", low=1e-4, high=10.0, log=True),
        HyperParam(
            "gamma_sigma", 0.5, "decay exponent of gamma", low=0.0, high=1.0, searchable=False
        ),
        HyperParam(
            "rho",
            0.0,
            "l2 regularisation of the task weights",
            low=0.0,
            high=10.0,
            searchable=False,
        ),
        HyperParam(
            "normalise",
            "loss",
            "task-gradient scaling: loss (L_t g/|g|) or none",
            kind="str",
            choices=("loss", "none"),
            searchable=False,
        ),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.register_buffer(
            "lambd", torch.full((self.n_tasks,), 1.0 / self.n_tasks, dtype=torch.float64)
        )
        self.y: torch.Tensor | None = None
        self.steps = 0

    def _rate(self, name: str) -> float:
        base = float(self.config[name])  # type: ignore[arg-type]
        return base / self.steps ** float(self.config[f"{name}_sigma"])  # type: ignore[arg-type]

    def combine_parameter_gradients(
        self, rows: Sequence[Sequence[torch.Tensor]], losses: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        self.steps += 1
        n = self.n_tasks
        if self.config["normalise"] == "loss":
            loss = losses.detach().double().cpu().tolist()
            scale = [loss[t] / (nt + _EPS) for t, nt in enumerate(row_norms(rows))]
        else:
            scale = [1.0] * n
        self.y = state_buffer(self.y, rows)
        views = flat_views(self.y, rows)
        grads = [g for row in rows for g in row]
        per_param = len(rows[0])
        torch._foreach_mul_(grads, [scale[t] for t in range(n) for _ in range(per_param)])
        torch._foreach_lerp_([v for row in views for v in row], grads, self._rate("beta"))
        yy = gramian(self.y).numpy()
        rho = float(self.config["rho"])  # type: ignore[arg-type]
        lam = self.lambd.cpu().numpy()
        lam = project_simplex(lam - self._rate("gamma") * ((yy + rho * np.eye(n)) @ lam))
        self.lambd.copy_(torch.as_tensor(lam, dtype=torch.float64))
        direction = list(rows[0])  # task 0's gradients are spent: reuse their memory
        for out, view in zip(direction, views[0], strict=True):
            torch.mul(view, float(lam[0]), out=out)
        for t in range(1, n):
            torch._foreach_add_(direction, views[t], alpha=float(lam[t]))
        return direction, torch.as_tensor(lam, dtype=torch.float32, device=rows[0][0].device)

    def get_extra_state(self) -> dict[str, Any]:
        return {"y": self.y, "steps": self.steps}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        y = state["y"]
        self.y = None if y is None else y.detach().clone()
        self.steps = int(state["steps"])
