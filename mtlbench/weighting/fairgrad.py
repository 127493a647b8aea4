"""FairGrad (Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024).

Alpha-fair allocation of the per-task improvements ``u_t = g_t . d``: the update ``d = J^T w``
solves the paper's eq. 4, ``(G w)_t = w_t^(-1/alpha)`` with ``w > 0`` (``G = J J^T``). These are
the stationarity conditions of the strictly convex (for ``G`` positive definite)
``f(w) = 1/2 w^T G w - sum_t phi(w_t)`` with ``phi(w) = log w`` (alpha = 1, Nash-MTL's equations,
proportional fairness) or ``w^(1 - 1/alpha) / (1 - 1/alpha)``. We minimise ``f`` exactly with a
damped Newton method in float64 on the trace-normalised Gramian (``G_n = G / c``,
``w = w_n c^(-alpha/(alpha+1))``), warm-started from the previous step. The official code (and
LibMTL, torchjd) call ``scipy.optimize.least_squares`` on the residual from ``w = 1/T`` with
default tolerances.

``alpha = 1`` by default (LibMTL's default; the paper's experiments use several values per
benchmark). ``alpha = 0`` is linear scalarisation (weights 1/T, as in torchjd).

A solution exists only when some direction improves every task: with a zero task gradient or two
opposite ones ``f`` is unbounded below. That is a *solver failure*: counted
(``diagnostics()['solver_failures']``), warned about, and the step reuses the last successful
FairGrad weights (1/T before any success): never another method.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtlbench.tasks import Task
from mtlbench.weighting.base import GradientNeed, HyperParam, Strategy
from mtlbench.weighting.registry import register

_MAX_NEWTON = 200
_TOL = 1e-10  # relative residual max_t |w_t^(1/alpha) (G w)_t - 1|
_ACCEPT = 1e-6
_ZERO = 1e-12


def fairgrad_weights(
    gram: np.ndarray, alpha: float, start: np.ndarray | None = None
) -> np.ndarray | None:
    """Exact ``w > 0`` with ``G w = w^(-1/alpha)`` (float64), or None when none exists."""
    n = len(gram)
    if alpha == 0.0:
        return np.full(n, 1.0 / n)
    trace = float(np.trace(gram))
    if not np.isfinite(trace) or trace <= 0.0:
        return None
    g = gram / trace
    if np.diag(g).min() <= _ZERO:
        return None
    p = 1.0 / alpha
    scale = trace ** (-alpha / (alpha + 1.0))  # w(G) = scale * w(G / trace)
    w = None
    if start is not None and np.all(np.isfinite(start)) and np.min(start) > 0.0:
        w = np.asarray(start, dtype=np.float64) / scale
    if w is None:
        w = np.diag(g) ** (-alpha / (alpha + 1.0))  # exact when G is diagonal

    def phi(x: np.ndarray) -> float:
        return float(np.log(x).sum()) if p == 1.0 else float((x ** (1.0 - p)).sum() / (1.0 - p))

    def objective(x: np.ndarray) -> float:
        return float(0.5 * x @ g @ x) - phi(x)

    value = objective(w)
    for _ in range(_MAX_NEWTON):
        gw = g @ w
        residual = np.abs(w**p * gw - 1.0).max()
        if residual < _TOL:
            return w * scale
        grad = gw - w ** (-p)
        hess = g + np.diag(p * w ** (-p - 1.0))
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return None
        decrement = float(grad @ step)
        if not np.isfinite(decrement):
            return None
        if decrement < 1e-15:
            return w * scale if residual < _ACCEPT else None
        t = 1.0
        while True:
            cand = w - t * step
            if cand.min() > 0.0:
                cand_value = objective(cand)
                if cand_value <= value - 1e-4 * t * decrement:
                    break
            t *= 0.5
            if t < 1e-20:
                return w * scale if residual < _ACCEPT else None
        w, value = cand, cand_value
        if w.max() > 1e12:  # running off to infinity: no solution
            return None
    return w * scale if np.abs(w**p * (g @ w) - 1.0).max() < _ACCEPT else None


@register
class FairGrad(Strategy):
    solver_failures: torch.Tensor  # buffer
    last_weights: torch.Tensor  # buffer
    solved: torch.Tensor  # buffer
    name = "fairgrad"
    needs = GradientNeed.SHARED_PARAMETERS
    paper = "Ban & Ji, Fair Resource Allocation in Multi-Task Learning, ICML 2024"
    summary = "alpha-fair task improvements: G w = w^(-1/alpha) (exact Newton, float64)"
    weights_from_gramian = True
    hparams = (
        HyperParam(
            "alpha", 1.0, "fairness exponent (0: linear, 1: proportional)", low=0.0, high=10.0
        ),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.register_buffer("solver_failures", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_weights", torch.full((self.n_tasks,), 1.0 / self.n_tasks))
        self.register_buffer("solved", torch.zeros((), dtype=torch.bool))

    def diagnostics(self) -> dict[str, float]:
        return {"solver_failures": float(self.solver_failures)}

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        alpha = float(self.config["alpha"])  # type: ignore[arg-type]
        start = self.last_weights.double().cpu().numpy() if bool(self.solved) else None
        solution = fairgrad_weights(gram.numpy(), alpha, start)
        if solution is None:
            self.solver_failures += 1
            warnings.warn(
                f"fairgrad: no solution of G w = w^(-1/alpha) ({int(self.solver_failures)} "
                "failures so far); reusing the last successful FairGrad weights",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            self.last_weights.copy_(torch.as_tensor(solution, dtype=torch.float32))
            self.solved.fill_(True)
        return self.last_weights.detach().cpu().clone()
