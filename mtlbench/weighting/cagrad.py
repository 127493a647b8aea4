"""Conflict-Averse Gradient Descent, CAGrad (Liu, Liu, Jin, Stone & Liu, NeurIPS 2021).

With ``g0 = (1/T) sum_t g_t`` the average gradient, CAGrad takes the direction in the ball
around ``g0`` that maximises the worst task improvement (paper, eq. 2):
``d* = argmax_{||d - g0|| <= c ||g0||} min_t g_t . d``. The optimum lies in the span of the task
gradients, ``d = J^T b``, so we solve this primal problem directly in T + 1 variables:
``max_{b, s} s  s.t.  (G b)_t >= s,  ||L^T (b - 1/T)|| <= c ||g0||`` with ``G = L L^T``, a small
second-order cone program (cvxpy + CLARABEL, compiled once, parameters updated each step) on the
trace-normalised float64 Gramian. Weights ``b`` are reported; with ``c = 0`` they are 1/T.

Scale convention: the paper's ``d*`` (mean-gradient scale, no extra factor). The official code
divides by ``1 + c^2`` (``rescale=1``), LibMTL multiplies by T: the same direction at another
learning rate. ``c = 0.4``: the official code's default and the paper's NYUv2/Cityscapes value.

Native, not torchjd's ``CAGrad``: measured on our awkward cases, it returns a zero update when
the dual combination's norm falls below 1e-4 (aligned rows of norms 1e-3 and 1e3, where the exact
answer is ``d = 1.4 * g0``; a zero row next to two non-conflicting rows); it also solves the dual,
whose recovery ``g0 + (c ||g0|| / ||g_w||) g_w`` divides by ``||g_w||``. The primal has no such
division. A solver failure is counted (``diagnostics()['solver_failures']``), warned about, and
the step reuses the last successful CAGrad weights (1/T before any success): never another method.
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

# CLARABEL's defaults (1e-8) lose ~0.1% when gradient norms span 1e-3..1e3 (the worst task's
# improvement is then ~1e-6 of the normalised scale); at 1e-12 the aligned-rows case is exact to
# 1e-7 and a warm solve still takes < 1 ms.
_TOLERANCES = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "tol_ktratio": 1e-10}


_SOLVED = ("optimal", "optimal_inaccurate")


class _PrimalProblem:
    """The CAGrad primal as a parametrised cvxpy problem, built once (cvxpy imports lazily)."""

    def __init__(self, n: int) -> None:
        import cvxpy as cp

        self.cp = cp
        self.gram = cp.Parameter((n, n))
        self.factor_t = cp.Parameter((n, n))
        self.radius = cp.Parameter(nonneg=True)
        self.b = cp.Variable(n)
        s = cp.Variable()
        centre = np.full(n, 1.0 / n)
        constraints = [
            self.gram @ self.b >= s,
            cp.norm(self.factor_t @ (self.b - centre), 2) <= self.radius,
        ]
        self.problem = cp.Problem(cp.Maximize(s), constraints)

    def solve(self, gram: np.ndarray, c: float) -> np.ndarray | None:
        n = len(gram)
        eigval, eigvec = np.linalg.eigh(gram)
        factor = eigvec * np.sqrt(np.clip(eigval, 0.0, None))  # gram = factor @ factor.T
        g0_sq = float(np.full(n, 1.0 / n) @ gram @ np.full(n, 1.0 / n))
        self.gram.value = gram
        self.factor_t.value = factor.T
        self.radius.value = c * np.sqrt(max(g0_sq, 0.0))
        try:
            with warnings.catch_warnings():  # "inaccurate" is handled below, not printed
                warnings.simplefilter("ignore", UserWarning)
                # No warm start: the answer must not depend on earlier solves, or a resumed
                # trial (fresh problem object) would drift from an uninterrupted one.
                self.problem.solve(solver=self.cp.CLARABEL, warm_start=False, **_TOLERANCES)
        except self.cp.error.SolverError:
            return None
        # "inaccurate" is CLARABEL's AlmostSolved at our 1e-12 tolerances: still far tighter
        # than its defaults, so it counts as a solution
        if self.problem.status not in _SOLVED or self.b.value is None:
            return None
        return np.asarray(self.b.value, dtype=np.float64)


@register
class CAGrad(Strategy):
    solver_failures: torch.Tensor  # buffer
    last_weights: torch.Tensor  # buffer
    name = "cagrad"
    needs = GradientNeed.SHARED_PARAMETERS
    paper = "Liu, Liu, Jin, Stone & Liu, NeurIPS 2021"
    summary = "best worst-task improvement within a ball around the mean gradient"
    weights_from_gramian = True
    hparams = (HyperParam("c", 0.4, "radius of the ball, relative to ||g0||", low=0.0, high=10.0),)

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.register_buffer("solver_failures", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_weights", torch.full((self.n_tasks,), 1.0 / self.n_tasks))
        self._problem: _PrimalProblem | None = None

    def diagnostics(self) -> dict[str, float]:
        return {"solver_failures": float(self.solver_failures)}

    def solve_weights(self, gram: np.ndarray) -> np.ndarray | None:
        """CAGrad weights ``b`` for a float64 Gramian, or None when the solver failed."""
        n = len(gram)
        trace = float(np.trace(gram))
        c = float(self.config["c"])  # type: ignore[arg-type]
        if trace <= 0.0 or c == 0.0:  # all gradients zero, or the ball is the point g0
            return np.full(n, 1.0 / n)
        if self._problem is None:
            self._problem = _PrimalProblem(n)
        return self._problem.solve(gram / trace, c)

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        solution = self.solve_weights(gram.numpy())
        if solution is None:
            self.solver_failures += 1
            warnings.warn(
                f"cagrad: the cone solver failed ({int(self.solver_failures)} failures so far); "
                "reusing the last successful CAGrad weights",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            self.last_weights.copy_(torch.as_tensor(solution, dtype=torch.float32))
        return self.last_weights.detach().cpu().clone()
