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


def zero_rows(gram: np.ndarray) -> np.ndarray:
    """Mask of the task gradients that are exactly zero (up to denormals): the only rows the
    scale-free solvers below cannot normalise. A row 1e-8 times smaller than another is kept."""
    diag = np.diag(np.asarray(gram, dtype=np.float64))
    return diag <= max(float(diag.max(initial=0.0)), 1e-300) * 1e-60


def jacobi_eigh(gram: np.ndarray, sweeps: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of a symmetric positive semi-definite matrix by
    two-sided cyclic Jacobi rotations.

    Why not ``numpy.linalg.eigh``: it finds eigenvalues to an absolute accuracy of ``eps *
    ||G||``, so with gradient norms 1e-4 and 1e4 (eigenvalues 1e-8 and 1e8) the small one has
    no correct digit. Jacobi with the relative stopping test ``|a_pq| <= eps sqrt(a_pp a_qq)``
    finds every eigenvalue to a relative accuracy of ``eps * cond(C)``, ``C`` the Gramian with
    unit diagonal (Demmel & Veselic, SIAM J. Matrix Anal. Appl. 1992): the angles between the
    task gradients matter, their scales do not.
    """
    a = 0.5 * (np.asarray(gram, dtype=np.float64) + np.asarray(gram, dtype=np.float64).T)
    n = len(a)
    v = np.eye(n)
    eps = np.finfo(np.float64).eps
    for _ in range(sweeps):
        rotated = False
        for p in range(n - 1):
            for q in range(p + 1, n):
                apq = a[p, q]
                if abs(apq) <= eps * np.sqrt(abs(a[p, p] * a[q, q])) or apq == 0.0:
                    continue
                rotated = True
                theta = (a[q, q] - a[p, p]) / (2.0 * apq)
                t = np.copysign(1.0, theta) / (abs(theta) + np.hypot(theta, 1.0))
                c = 1.0 / np.hypot(t, 1.0)
                s = t * c
                rot = np.array([[c, s], [-s, c]])
                idx = [p, q]
                a[:, idx] = a[:, idx] @ rot
                a[idx, :] = rot.T @ a[idx, :]
                a[p, q] = a[q, p] = 0.0
                v[:, idx] = v[:, idx] @ rot
        if not rotated:
            break
    values = np.diag(a).copy()
    order = np.argsort(values)
    return values[order], v[:, order]


RANK_TOL = 1e-10


def numerical_range(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the Gramian that span the task gradients' range, ascending.

    An eigenpair ``(lam, v)`` counts as zero when ``lam <= RANK_TOL * sum_t v_t^2 G_tt``: small
    next to the squared norms of the gradients it combines, so a genuinely small task gradient
    (norm 1e-4 next to 1e4) is kept while a dependency among float32 rows, exact up to rounding
    (relative size ~1e-15), is dropped."""
    values, vectors = jacobi_eigh(gram)
    scale = (vectors**2).T @ np.diag(np.asarray(gram, dtype=np.float64))
    keep = values > RANK_TOL * scale
    return values[keep], vectors[:, keep]
