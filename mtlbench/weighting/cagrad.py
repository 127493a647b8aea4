"""Conflict-Averse Gradient Descent, CAGrad (Liu, Liu, Jin, Stone & Liu, NeurIPS 2021).

With ``g0 = (1/T) sum_t g_t`` the average gradient, CAGrad takes the direction in the ball
around ``g0`` that maximises the worst task improvement (paper, eq. 2):
``d* = argmax_{||d - g0|| <= c ||g0||} min_t g_t . d``. The optimum lies in the span of the task
gradients, ``d = J^T b``, so we solve this primal problem directly in T + 1 variables:
``max_{b, s} s  s.t.  (G b)_t >= s,  ||L^T (b - 1/T)|| <= c ||g0||`` with ``G = L L^T``.

For T <= 8 (:data:`MAX_ENUMERATED_TASKS`) it is solved exactly by enumerating active sets in
float64: at the optimum the ball is active, ``d = g0 + r J^T mu`` with ``r = c ||g0||``,
``||J^T mu|| = 1``, and the tasks A with ``mu_A > 0`` have equal improvements ``s``; for a
linearly independent A that is ``G_AA mu_A = (s 1 - h_A) / r`` (``h = G 1 / T``) plus one
quadratic equation in ``s``, solved on the unit-diagonal Gramian so that task gradients of
norms 1e-3 and 1e3 are as accurate as equal ones. Every candidate is primal feasible; the best
one is the optimum. (A conic solver on the trace-normalised Gramian, used before, reported
"optimal" 10.8% away from it on that input: the small task's entries were 1e-12 of the trace,
the size of its tolerances.) Zero task gradients are left out of the enumeration (their
improvement is 0 whatever ``d``; the others' optimum is then also optimal). When no direction
improves every task (e.g. opposite rows), the optimum value is 0 if some ``d`` in the ball
conflicts with no task; those ``d`` form a set, and we return the one closest to ``g0`` (its
projection onto the dual cone, a candidate whenever it lies in the ball). Larger T use a small
second-order cone program (cvxpy + CLARABEL, compiled once). Weights ``b`` are reported; with
``c = 0`` they are 1/T.

Scale convention: the paper's ``d*`` (mean-gradient scale, no extra factor). The official code
divides by ``1 + c^2`` (``rescale=1``), LibMTL multiplies by T: the same direction at another
learning rate. ``c = 0.4``: the official code's default and the paper's NYUv2/Cityscapes value.

Native, not torchjd's ``CAGrad``: measured on our awkward cases, it returns a zero update when
the dual combination's norm falls below 1e-4 (aligned rows of norms 1e-3 and 1e3, where the exact
answer is ``d = 1.4 * g0``; a zero row next to two non-conflicting rows); it also solves the dual,
whose recovery ``g0 + (c ||g0|| / ||g_w||) g_w`` divides by ``||g_w||``. The primal has no such
division. The problem always has a solution (a compact feasible set); a failure of the cone
solver (T > 8 only) is counted (``diagnostics()``), warned about, and the step reuses the last
successful CAGrad weights (1/T before any success): never silently another method.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mtlbench.tasks import Task
from mtlbench.weighting._linalg import dual_cone_weights, zero_rows
from mtlbench.weighting.base import GradientNeed, HyperParam, Strategy
from mtlbench.weighting.registry import register

# CLARABEL's defaults (1e-8) lose ~0.1% when gradient norms span 1e-3..1e3 (the worst task's
# improvement is then ~1e-6 of the normalised scale); at 1e-12 the aligned-rows case is exact to
# 1e-7 and a warm solve still takes < 1 ms.
_TOLERANCES = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "tol_ktratio": 1e-10}


_SOLVED = ("optimal", "optimal_inaccurate")
MAX_ENUMERATED_TASKS = 8  # 2^T - 1 active sets: 255 small solves, ~10 ms in numpy
_COND = 1e12  # an active set whose unit-diagonal Gramian is this ill-conditioned is dependent


def cagrad_active_set(gram: np.ndarray, c: float) -> np.ndarray:
    """Exact CAGrad weights ``b`` (``d = J^T b``) for a float64 Gramian, by active sets."""
    g = 0.5 * (np.asarray(gram, dtype=np.float64) + np.asarray(gram, dtype=np.float64).T)
    n = len(g)
    centre = np.full(n, 1.0 / n)
    h = g @ centre  # h_t = g_t . g0
    radius = c * float(np.sqrt(max(float(centre @ h), 0.0)))
    if radius == 0.0:  # c = 0 or g0 = 0: the ball is the point g0
        return centre
    live = np.flatnonzero(~zero_rows(g))
    scale = 1.0 / np.sqrt(np.diag(g)[live])
    candidates = [centre]
    # When no direction improves every task (0 in the convex hull), the optimum is 0 whenever
    # some d in the ball conflicts with no task, and such d form a set: we take the one
    # closest to g0, the projection of g0 onto the dual cone (UPGrad's projection).
    projected = dual_cone_weights(g, centre)
    shift = projected - centre
    if float(shift @ g @ shift) <= radius * radius * (1.0 + 1e-12):
        candidates.append(projected)
    for size in range(1, len(live) + 1):
        for pos in itertools.combinations(range(len(live)), size):
            idx, sc = live[list(pos)], scale[list(pos)]
            unit = g[np.ix_(idx, idx)] * sc[:, None] * sc[None, :]
            if np.linalg.cond(unit) > _COND:
                continue
            p = sc * np.linalg.solve(unit, sc)  # G_AA^-1 1
            q = sc * np.linalg.solve(unit, sc * h[idx])  # G_AA^-1 h_A
            alpha, beta, gamma = float(p.sum()), float(h[idx] @ p), float(h[idx] @ q)
            disc = beta * beta - alpha * (gamma - radius * radius)
            if alpha <= 0.0 or disc < 0.0:
                continue
            root = np.sqrt(disc)
            for s in ((beta + root) / alpha, (beta - root) / alpha):
                b = centre.copy()
                b[idx] += s * p - q  # r mu_A
                candidates.append(b)
    values = [float((g @ b).min()) for b in candidates]
    return candidates[int(np.argmax(values))]


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
    last_weights: torch.Tensor  # buffer
    name = "cagrad"
    needs = GradientNeed.SHARED_PARAMETERS
    paper = "Liu, Liu, Jin, Stone & Liu, NeurIPS 2021"
    summary = "best worst-task improvement within a ball around the mean gradient"
    weights_from_gramian = True
    hparams = (HyperParam("c", 0.4, "radius of the ball, relative to ||g0||", low=0.0, high=10.0),)

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.track_solver()
        self.register_buffer("last_weights", torch.full((self.n_tasks,), 1.0 / self.n_tasks))
        self._problem: _PrimalProblem | None = None

    def solve_weights(self, gram: np.ndarray) -> np.ndarray | None:
        """CAGrad weights ``b`` for a float64 Gramian, or None when the solver failed."""
        n = len(gram)
        trace = float(np.trace(gram))
        c = float(self.config["c"])  # type: ignore[arg-type]
        if trace <= 0.0 or c == 0.0:  # all gradients zero, or the ball is the point g0
            return np.full(n, 1.0 / n)
        if n <= MAX_ENUMERATED_TASKS:
            return cagrad_active_set(gram, c)
        if self._problem is None:
            self._problem = _PrimalProblem(n)
        return self._problem.solve(gram / trace, c)

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        solution = self.solve_weights(gram.numpy())
        self.record_step(failed=solution is None, fallback=False)
        if solution is None:
            failures = int(self.get_buffer("solver_failures"))
            warnings.warn(
                f"cagrad: the cone solver failed ({failures} failures so far); "
                "reusing the last successful CAGrad weights",
                RuntimeWarning,
                stacklevel=2,
            )
        else:
            self.last_weights.copy_(torch.as_tensor(solution, dtype=torch.float32))
        return self.last_weights.detach().cpu().clone()
