"""Nash-MTL (Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022).

The update ``d = J^T a`` is the Nash bargaining solution: ``a > 0`` with ``(G a)_t = 1 / a_t``
for every task (``G = J J^T``), i.e. every task's improvement ``g_t . d`` is inversely
proportional to its weight; then ``||d||^2 = a^T G a = T``. The equations are the stationarity
conditions of the strictly convex ``f(a) = 1/2 a^T G a - sum_t log a_t`` on ``a > 0``, which we
minimise exactly with a damped Newton method in float64, scale-free: with
``D = diag(G)^(-1/2)``, ``a = D x`` solves ``x * (C x) = 1`` for the unit-diagonal ``C = D G D``
(before, the solve ran on ``G / tr G`` and called a task with gradient norm 1e-3 next to 1e3
"zero", falling back on a problem that has a solution). Warm-started from the previous step.
The paper approximates the same solution with a sequence of convex programs (20 CCP
iterations of cvxpy + ECOS); the exact solve removes that iteration limit.

A solution exists only if some direction improves every task. With a zero task gradient or two
opposite ones it does not (``f`` is unbounded below): the public implementations then keep the
previous weights silently. Here that is a *solver failure*: counted
(``diagnostics()``: ``solver_failures``, and ``fallback_steps`` for every step that runs on
fallback weights, including the steps between solves when ``update_weights_every > 1``), warned
about, and the step reuses the last successful Nash-MTL weights (1 for every task before any
success, the official initialisation, which is the plain sum): never silently another method.

Defaults as in the paper: ``update_weights_every = 1``; ``max_norm = 0`` (off). The official code
clips the shared gradient norm at 1.0; ``nash_mtl.max_norm=1`` reproduces it. Native, not
torchjd's ``NashMTL``: that one needs ``ecos`` (not installed here: ImportError, measured) and
falls back to the previous weights on any solver error without reporting it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtlbench.tasks import Task
from mtlbench.weighting._linalg import zero_rows
from mtlbench.weighting.base import GradientNeed, HyperParam, Strategy
from mtlbench.weighting.registry import register

_MAX_NEWTON = 100
_TOL = 1e-10  # on max_t |a_t (G a)_t - 1|: done
_ACCEPT = 1e-6  # the same residual, accepted when round-off stops the Newton steps
_DIVERGED = 1e12  # scaled weights running off to infinity: f is unbounded below


def nash_weights(gram: np.ndarray, start: np.ndarray | None = None) -> np.ndarray | None:
    """Exact solution ``a > 0`` of ``a * (G a) = 1`` (float64), or None when none exists.

    Scale-free: with ``D = diag(G)^(-1/2)`` and ``a = D x`` the equations become
    ``x * (C x) = 1`` for ``C = D G D`` (unit diagonal), which depends only on the angles
    between the task gradients. So a task whose gradient is 1e6 times smaller than another's is
    solved as accurately as equal norms (the former test on ``G / tr G`` called it zero)."""
    g = np.asarray(gram, dtype=np.float64)
    if not np.all(np.isfinite(g)):
        return None
    if zero_rows(g).any():  # (G a)_t = 0 for that task: no a_t can make a_t (G a)_t = 1
        return None
    d = 1.0 / np.sqrt(np.diag(g))
    c = g * d[:, None] * d[None, :]
    x = np.asarray(start, dtype=np.float64) / d if start is not None else None
    if x is None or not np.all(np.isfinite(x)) or x.min() <= 0.0:
        x = np.full(len(g), 1.0 / np.sqrt(len(g)))

    def objective(y: np.ndarray) -> float:
        return float(0.5 * y @ c @ y - np.log(y).sum())

    def solved(y: np.ndarray, tol: float) -> bool:
        return bool(np.abs(y * (c @ y) - 1.0).max() < tol)

    value = objective(x)
    for _ in range(_MAX_NEWTON):
        cx = c @ x
        if solved(x, _TOL):
            return d * x
        grad = cx - 1.0 / x
        hess = c + np.diag(1.0 / x**2)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:  # x_t -> infinity made the Hessian numerically singular
            return None
        if float(grad @ step) < 1e-15:  # Newton decrement at round-off level: converged
            return d * x if solved(x, _ACCEPT) else None
        t = 1.0
        while True:  # stay in x > 0, then backtrack until f decreases (Armijo)
            cand = x - t * step
            if cand.min() > 0.0:
                cand_value = objective(cand)
                if cand_value <= value - 1e-4 * t * float(grad @ step):
                    break
            t *= 0.5
            if t < 1e-12:  # no decrease possible: converged to round-off, or stuck
                return d * x if solved(x, _ACCEPT) else None
        x, value = cand, cand_value
        if x.max() > _DIVERGED:
            return None
    return d * x if solved(x, _ACCEPT) else None


@register
class NashMTL(Strategy):
    last_weights: torch.Tensor  # buffer
    has_solution: torch.Tensor  # buffer
    failing: torch.Tensor  # buffer
    name = "nash_mtl"
    needs = GradientNeed.SHARED_PARAMETERS
    paper = "Navon et al., ICML 2022"
    summary = "Nash bargaining solution a_t (G a)_t = 1, solved exactly"
    weights_from_gramian = True
    hparams = (
        HyperParam(
            "update_weights_every",
            1,
            "solve every k steps, reuse the weights in between",
            kind="int",
            low=1,
            high=1000,
            searchable=False,
        ),
        HyperParam("max_norm", 0.0, "clip ||d|| to this value (0: off)", low=0.0, high=1e6),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.track_solver()
        self.register_buffer("last_weights", torch.ones(self.n_tasks, dtype=torch.float64))
        self.register_buffer("has_solution", torch.zeros((), dtype=torch.bool))
        # the last solve failed: the steps until the next solve run on fallback weights
        self.register_buffer("failing", torch.zeros((), dtype=torch.bool))

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        every = int(self.config["update_weights_every"])  # type: ignore[arg-type]
        failed = False
        if int(self.get_buffer("steps")) % every == 0:
            start = self.last_weights.cpu().numpy() if bool(self.has_solution) else None
            solution = nash_weights(gram.numpy(), start)
            failed = solution is None
            self.failing.fill_(failed)
            if solution is None:
                warnings.warn(
                    "nash_mtl: no Nash bargaining solution for this step's task gradients (a zero "
                    "or fully conflicting task gradient?); reusing the last successful weights "
                    f"({int(self.get_buffer('solver_failures')) + 1} failures so far)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                self.last_weights.copy_(torch.as_tensor(solution))
                self.has_solution.fill_(True)
        self.record_step(failed=failed, fallback=bool(self.failing))
        weights = self.last_weights.detach().cpu()
        max_norm = float(self.config["max_norm"])  # type: ignore[arg-type]
        if max_norm > 0:
            norm = float(weights @ gram @ weights) ** 0.5  # ||J^T a||
            if norm > max_norm:
                weights = weights * (max_norm / norm)
        return weights.float()
