"""Exact T x T algebra shared by the gradient strategies, in float64 on the CPU.

The Gramian ``G = J J^T`` of the per-task gradients is tiny (3 x 3 here) even when the Jacobian
``J`` has millions of columns, so every method that only needs ``G`` solves its small problem
exactly instead of iterating. Why float64 and exact solves: public implementations that solve
these problems in float32 or with early-stopping iterations land far from the true answer on
awkward inputs (gradient norms 1e-3 vs 1e3, zero rows, rank deficiency); see DESIGN.md and
``docs/strategies.md`` for the measured errors.

Two quadratic programs are solved by enumerating faces of the feasible set: on each face the
problem is an equality-constrained least-squares problem (one ``lstsq``), every face minimiser
that is feasible is a candidate, and the best candidate is the optimum (the optimum lies in the
relative interior of some face, where it is that face's minimiser; at a vertex of the optimal set
that minimiser is unique, so ``lstsq`` finds it even when ``G`` is singular). With T tasks this
is 2^T small solves: microseconds for T = 3, still cheap up to :data:`MAX_EXACT_TASKS`.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

MAX_EXACT_TASKS = 12
_CHUNK = 1 << 20  # columns per float64 block: bounds the extra memory of the Gramian
_RCOND = 1e-13  # relative cut-off for singular values of the (trace-normalised) face systems


def gramian(jacobian: torch.Tensor) -> torch.Tensor:
    """``J J^T`` accumulated in float64, [T, T] on the CPU.

    Blocks of columns are promoted one at a time, so a float32 Jacobian of ResNet18 (3 x 11M)
    never gets a full float64 copy.
    """
    n, m = jacobian.shape
    out = torch.zeros(n, n, dtype=torch.float64, device=jacobian.device)
    for start in range(0, m, _CHUNK):
        block = jacobian[:, start : start + _CHUNK].double()
        out += block @ block.T
    return out.cpu()


def _check_size(n: int) -> None:
    if n > MAX_EXACT_TASKS:
        raise ValueError(
            f"the exact T x T solver supports at most {MAX_EXACT_TASKS} tasks, got T={n}"
        )


def _normalised(gram: np.ndarray) -> np.ndarray | None:
    """``G / trace(G)`` (the solutions below are scale-invariant), or None when G is zero."""
    g = np.asarray(gram, dtype=np.float64)
    g = 0.5 * (g + g.T)
    trace = float(np.trace(g))
    if not np.isfinite(trace):
        raise ValueError(f"Gramian has non-finite entries: {g.tolist()}")
    if trace <= 0.0:
        return None
    return g / trace


def _equilibration(g: np.ndarray) -> np.ndarray:
    """``s_t = 1 / ||g_t||`` (1 / the largest norm for zero rows): solving the face systems in
    the variables ``x / s`` gives them a unit diagonal, so a task whose gradient is 1e6 times
    smaller than another's is not lost to the ``lstsq`` cut-off."""
    diag = np.diag(g).copy()
    floor = max(float(diag.max()), 1e-300) * 1e-30
    diag[diag <= floor] = max(float(diag.max()), 1e-300)
    return 1.0 / np.sqrt(diag)


def min_norm_weights(gram: np.ndarray) -> np.ndarray:
    """Exact ``argmin_{a in simplex} a^T G a``: the weights of the min-norm point of the convex
    hull of the task gradients (MGDA). All-zero gradients give uniform weights."""
    n = len(gram)
    _check_size(n)
    g = _normalised(gram)
    if g is None:
        return np.full(n, 1.0 / n)
    s = _equilibration(g)
    best, best_val = np.full(n, 1.0 / n), np.inf
    for size in range(1, n + 1):
        for face in itertools.combinations(range(n), size):
            idx = list(face)
            sf = s[idx]
            c = sf / np.linalg.norm(sf)
            kkt = np.zeros((size + 1, size + 1))
            kkt[:size, :size] = g[np.ix_(idx, idx)] * sf[:, None] * sf[None, :]
            kkt[:size, size] = c
            kkt[size, :size] = c
            rhs = np.zeros(size + 1)
            rhs[size] = 1.0 / np.linalg.norm(sf)
            sol = sf * np.linalg.lstsq(kkt, rhs, rcond=_RCOND)[0][:size]
            if sol.min() < -1e-9 * np.abs(sol).max():
                continue
            a = np.zeros(n)
            a[idx] = np.clip(sol, 0.0, None)
            a /= a.sum()
            val = float(a @ g @ a)
            if val < best_val * (1.0 - 1e-12):  # relative: the optimum can be ~1e-13
                best, best_val = a, val
    return best


def dual_cone_weights(gram: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Exact ``argmin_{v >= u} v^T G v``: the weights of the projection of ``J^T u`` onto the
    dual cone of the rows of J (Quinton & Rey 2024, Proposition 1), used by UPGrad."""
    n = len(gram)
    _check_size(n)
    u = np.asarray(u, dtype=np.float64)
    g = _normalised(gram)
    if g is None:
        return u.copy()
    s = _equilibration(g)
    tol = 1e-9 * max(1.0, float(np.abs(u).max()))
    best, best_val = u.copy(), float(u @ g @ u)
    for size in range(1, n + 1):
        for free in itertools.combinations(range(n), size):
            a = list(free)
            f = [i for i in range(n) if i not in free]
            v = u.copy()
            rhs = -g[np.ix_(a, f)] @ u[f] if f else np.zeros(size)
            sa = s[a]
            scaled = g[np.ix_(a, a)] * sa[:, None] * sa[None, :]
            v[a] = sa * np.linalg.lstsq(scaled, sa * rhs, rcond=_RCOND)[0]
            if (v[a] < u[a] - tol).any():
                continue
            v = np.maximum(v, u)
            val = float(v @ g @ v)
            if val < best_val * (1.0 - 1e-12):  # relative: the optimum can be ~1e-13
                best, best_val = v, val
    return best
