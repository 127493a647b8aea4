"""FairGrad (Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024).

Alpha-fair allocation of the per-task improvements ``u_t = g_t . d``: the update ``d = J^T w``
solves the paper's eq. 4, ``(G w)_t = w_t^(-1/alpha)`` with ``w > 0`` (``G = J J^T``). These are
the stationarity conditions of the strictly convex (for ``G`` positive definite)
``f(w) = 1/2 w^T G w - sum_t phi(w_t)`` with ``phi(w) = log w`` (alpha = 1, Nash-MTL's equations,
proportional fairness) or ``w^(1 - 1/alpha) / (1 - 1/alpha)``. We solve them exactly with a
damped Newton method in float64, scaled per task (:func:`fairgrad_weights`: gradient norms that
differ by 1e8 cost nothing), warm-started from the previous step. The official code (and
LibMTL, torchjd) call ``scipy.optimize.least_squares`` on the residual from ``w = 1/T`` with
default tolerances.

``alpha = 1`` by default (LibMTL's default; the paper's experiments use several values per
benchmark). ``alpha = 0`` is linear scalarisation (weights 1/T, as in torchjd).

A solution exists only when some direction improves every task: with a zero task gradient or two
opposite ones ``f`` is unbounded below. That is a *solver failure*: counted (``diagnostics()``:
``steps``, ``solver_failures``, ``fallback_steps``), warned about, and the step reuses the last
successful FairGrad weights (1/T before any success): never another method.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtlbench.mtl.tasks import Task
from mtlbench.weighting.base import GradientNeed, HyperParam, Strategy
from mtlbench.weighting.registry import register

_MAX_NEWTON = 200
_TOL = 1e-12  # on max_t |w_t^(1/alpha) (G w)_t - 1|: done
_ACCEPT = 1e-7  # the same residual, accepted when round-off stops the Newton steps
_DIVERGED = 1e15  # a scaled weight this large: running off to infinity, no solution


def fairgrad_weights(
    gram: np.ndarray, alpha: float, start: np.ndarray | None = None
) -> np.ndarray | None:
    """Exact ``w > 0`` with ``G w = w^(-1/alpha)`` (float64), or None when none exists.

    Scaled so that badly scaled tasks cost nothing: with ``D_t = G_tt^(-1/(1+p))``
    (``p = 1/alpha``, the solution when G is diagonal) and ``w = D x``, the equations read
    ``(H x)_t = c_t x_t^(-p)`` with ``H = D G D`` and ``c_t = H_tt``; Newton steps on ``x``
    (Hessian of the convex potential, symmetrically equilibrated) with a backtracking search on
    the row-scaled residual ``r_t = x_t^p (H x)_t / c_t - 1`` (dimensionless for every task)."""
    g = 0.5 * (np.asarray(gram, dtype=np.float64) + np.asarray(gram, dtype=np.float64).T)
    n = len(g)
    if alpha == 0.0:
        return np.full(n, 1.0 / n)
    diag = np.diag(g)
    if not np.all(np.isfinite(g)) or diag.min() <= 0.0:  # a zero gradient: (G w)_t = 0
        return None
    p = 1.0 / alpha
    d = diag ** (-1.0 / (1.0 + p))
    h = g * d[:, None] * d[None, :]
    c = np.diag(h).copy()
    x = np.ones(n)
    if start is not None and np.all(np.isfinite(start)) and np.min(start) > 0.0:
        x = np.asarray(start, dtype=np.float64) / d

    def residual(v: np.ndarray) -> np.ndarray:
        return np.asarray(v**p * (h @ v) / c - 1.0)

    def noise(v: np.ndarray) -> np.ndarray:
        """Round-off level of ``residual``: ``(H x)_t`` can be a near-cancelling sum."""
        # capped: near a missing solution (x running off along a null direction of H) the
        # cancellation grows without bound and must not pass for convergence
        level = 1e3 * np.finfo(np.float64).eps * v**p * (np.abs(h) @ v) / c
        return np.asarray(np.minimum(level, _ACCEPT))

    def potential(v: np.ndarray) -> float:
        barrier = np.log(v) if p == 1.0 else v ** (1.0 - p) / (1.0 - p)
        return float(0.5 * v @ h @ v - (c * barrier).sum())

    r = residual(x)
    for _ in range(_MAX_NEWTON):
        if np.all(np.abs(r) <= _TOL + noise(x)):
            return d * x
        grad = h @ x - c * x ** (-p)
        hess = h + np.diag(p * c * x ** (-p - 1.0))
        s = 1.0 / np.sqrt(np.diag(hess))
        try:
            step = s * np.linalg.solve(hess * s[:, None] * s[None, :], s * grad)
        except np.linalg.LinAlgError:
            return None
        decrement = float(grad @ step)
        merit, value = float(np.linalg.norm(r)), potential(x)
        t = 1.0
        while True:  # stay in x > 0; accept a decrease of the potential or of the residual
            cand = x - t * step
            if cand.min() > 0.0:
                cand_r = residual(cand)
                if (
                    potential(cand) <= value - 1e-4 * t * decrement
                    or float(np.linalg.norm(cand_r)) < (1.0 - 1e-4 * t) * merit
                ):
                    break
            t *= 0.5
            if t < 1e-12:  # no progress: converged to round-off, or no solution
                return d * x if np.all(np.abs(r) <= 10 * _ACCEPT) else None
        x, r = cand, cand_r
        if x.max() > _DIVERGED:
            return None
    return d * x if np.all(np.abs(r) <= 10 * _ACCEPT) else None


@register
class FairGrad(Strategy):
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
        self.track_solver()
        self.register_buffer("last_weights", torch.full((self.n_tasks,), 1.0 / self.n_tasks))
        self.register_buffer("solved", torch.zeros((), dtype=torch.bool))

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        alpha = float(self.config["alpha"])  # type: ignore[arg-type]
        start = self.last_weights.double().cpu().numpy() if bool(self.solved) else None
        solution = fairgrad_weights(gram.numpy(), alpha, start)
        self.record_step(failed=solution is None, fallback=False)
        if solution is None:
            failures = int(self.get_buffer("solver_failures"))
            warnings.warn(
                f"fairgrad: no solution of G w = w^(-1/alpha) ({failures} "
                "failures so far); reusing the last successful FairGrad weights",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            self.last_weights.copy_(torch.as_tensor(solution, dtype=torch.float32))
            self.solved.fill_(True)
        return self.last_weights.detach().cpu().clone()
