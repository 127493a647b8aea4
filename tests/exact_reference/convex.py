"""References for the methods defined by a convex problem: MGDA, UPGrad, CAGrad, Nash-MTL.

Each is found by enumerating the candidate active sets of its KKT conditions in 60-digit
arithmetic and keeping the candidate that satisfies them (or, for CAGrad, the best dual value:
weak duality then certifies any primal point that reaches it).
"""

from __future__ import annotations

import mpmath as mp
import numpy as np

from tests.exact_reference.exact import TINY, det, gdot, quad, solve, sub, subsets


def _scale(gram: mp.matrix) -> mp.mpf:
    return max(gram[i, i] for i in range(gram.rows)) or mp.mpf(1)


def min_norm(gram: mp.matrix) -> list:
    """``argmin_{a in simplex} a^T G a``: KKT ``(G a)_t >= a^T G a`` for every t, equality on
    the support. The min-norm point ``J^T a`` is unique (``a`` need not be)."""
    n = gram.rows
    zero = [t for t in range(n) if gram[t, t] == 0]
    if zero:  # the min-norm point is 0, at that vertex
        return [mp.mpf(1) if t == zero[0] else mp.mpf(0) for t in range(n)]
    tol = TINY * _scale(gram)
    for support in subsets(list(range(n))):
        # KKT of min a^T G a on the support's affine hull, in the unit-diagonal variables
        # y = a ||g||: [[C, c], [c^T, 0]] [y; nu] = [0; 1 / |D 1|], c = D 1 / |D 1|
        k = len(support)
        inv = [1 / mp.sqrt(gram[t, t]) for t in support]
        size = mp.sqrt(mp.fsum(x**2 for x in inv))
        kkt = mp.matrix(k + 1, k + 1)
        for i in range(k):
            for j in range(k):
                kkt[i, j] = gram[support[i], support[j]] * inv[i] * inv[j]
            kkt[i, k] = kkt[k, i] = inv[i] / size
        if abs(det(kkt)) < TINY:
            continue
        y = mp.lu_solve(kkt, mp.matrix([0] * k + [1 / size]))
        sol = [y[i] * inv[i] for i in range(k)]
        a = [mp.mpf(0)] * n
        for i, t in enumerate(support):
            a[t] = sol[i]
        if min(a) < -TINY:
            continue
        value = quad(gram, a)
        if all(v >= value - tol for v in gdot(gram, a)):
            return a
    raise AssertionError("no KKT point found for the min-norm problem")


def no_common_descent(gram: mp.matrix) -> bool:
    """Gordan: no d with g_t . d > 0 for all t iff 0 is in the convex hull of the g_t."""
    a = min_norm(gram)
    return quad(gram, a) <= mp.mpf(10) ** -30 * _scale(gram)


def dual_cone_projection(gram: mp.matrix, u: list) -> list:
    """``argmin_{v >= u} v^T G v`` (the weights of the projection of ``J^T u`` onto the dual
    cone): KKT ``(G v)_F = 0`` on the free set, ``(G v)_B >= 0`` and ``v_B = u_B`` on the rest."""
    n = gram.rows
    tol = TINY * _scale(gram) * max(1, max(abs(x) for x in u))
    candidates = [[], *subsets(list(range(n)))]
    for free in candidates:
        bound = [t for t in range(n) if t not in free]
        v = list(u)
        if free:
            rhs = mp.matrix([-mp.fsum(gram[i, j] * u[j] for j in bound) for i in free])
            sol = solve(sub(gram, free, free), rhs)
            if sol is None:
                continue
            for i, t in enumerate(free):
                v[t] = sol[i]
            if any(v[t] < u[t] - tol for t in free):
                continue
        gv = gdot(gram, v)
        if all(gv[t] >= -tol for t in bound) and all(abs(gv[t]) <= tol for t in free):
            return v
    raise AssertionError("no KKT point found for the dual-cone projection")


def upgrad(gram: mp.matrix) -> list:
    n = gram.rows
    total = [mp.mpf(0)] * n
    for i in range(n):
        u = [mp.mpf(1) / n if t == i else mp.mpf(0) for t in range(n)]
        v = dual_cone_projection(gram, u)
        total = [a + b for a, b in zip(total, v, strict=True)]
    return total


def cagrad(gram: mp.matrix, c: float) -> tuple[list | None, mp.mpf]:
    """CAGrad's dual ``min_{w in simplex} F(w) = w . h + r ||J^T w||`` (``h = G 1 / T``,
    ``r = c ||g0||``): its minimum ``F*`` equals the primal optimum ``max min_t g_t . d`` over
    the ball, and ``d* = g0 + r J^T w / ||J^T w||`` when ``J^T w != 0``. Returns the primal
    weights ``b`` (None when the optimum is only certified by ``J^T w = 0``) and ``F*``."""
    n = gram.rows
    c = mp.mpf(c)
    h = [mp.fsum(gram[i, j] for j in range(n)) / n for i in range(n)]
    r = c * mp.sqrt(max(mp.fsum(h) / n, 0))
    centre = [mp.mpf(1) / n] * n
    if r == 0:
        return centre, min(h)
    best: tuple[mp.mpf, list | None] = (mp.inf, None)
    if no_common_descent(gram):  # J^T w = 0 for some w in the simplex: F = w . h = g0 . 0
        best = (mp.mpf(0), None)
    live = [t for t in range(n) if gram[t, t] > 0]
    for support in subsets(live):
        g_ss = sub(gram, support, support)
        p = solve(g_ss, mp.matrix([1] * len(support)))
        if p is None:
            continue
        q = solve(g_ss, mp.matrix([h[t] for t in support]))
        alpha = mp.fsum(p)
        beta = mp.fsum(h[t] * p[i] for i, t in enumerate(support))
        gamma = mp.fsum(h[t] * q[i] for i, t in enumerate(support))
        disc = beta**2 - alpha * (gamma - r**2)
        if alpha <= 0 or disc < 0:
            continue
        for nu in ((beta + mp.sqrt(disc)) / alpha, (beta - mp.sqrt(disc)) / alpha):
            z = [(nu * p[i] - q[i]) / r for i in range(len(support))]  # w / ||J^T w||
            if mp.fsum(z) <= 0 or min(z) < -TINY * max(abs(x) for x in z):
                continue
            w = [mp.mpf(0)] * n
            for i, t in enumerate(support):
                w[t] = max(z[i], 0) / mp.fsum(z)
            norm = mp.sqrt(quad(gram, w))
            value = mp.fsum(a * b for a, b in zip(w, h, strict=True)) + r * norm
            if value < best[0] and norm > 0:
                b = [centre[t] + r * w[t] / norm for t in range(n)]
                best = (value, b)
    assert best[0] < mp.inf, "no dual candidate for CAGrad"
    return best[1], best[0]


def nash(gram: mp.matrix, start: np.ndarray | None) -> list | None:
    """The Nash bargaining weights: ``a > 0`` with ``a_t (G a)_t = 1``; they exist iff some
    direction improves every task. Damped Newton on the strictly convex
    ``1/2 a^T G a - sum log a`` in 60 digits, to a residual of 1e-40."""
    if no_common_descent(gram):
        return None
    n = gram.rows
    a = [mp.mpf(float(x)) for x in start] if start is not None else None
    if a is None or min(a) <= 0:
        a = [1 / mp.sqrt(n * gram[t, t]) for t in range(n)]

    def f(x: list) -> mp.mpf:
        return quad(gram, x) / 2 - mp.fsum(mp.log(v) for v in x)

    for _ in range(500):
        ga = gdot(gram, a)
        if max(abs(a[t] * ga[t] - 1) for t in range(n)) < TINY:
            return a
        grad = mp.matrix([ga[t] - 1 / a[t] for t in range(n)])
        hess = mp.matrix(n, n)
        for i in range(n):
            for j in range(n):
                hess[i, j] = gram[i, j] + (1 / a[i] ** 2 if i == j else 0)
        step = mp.lu_solve(hess, grad)
        t = mp.mpf(1)
        value = f(a)
        decrement = mp.fsum(grad[i] * step[i] for i in range(n))
        cand = [a[i] - step[i] for i in range(n)]
        while decrement > mp.mpf(10) ** -20:  # damped phase; then pure Newton (quadratic)
            cand = [a[i] - t * step[i] for i in range(n)]
            if min(cand) > 0 and f(cand) <= value - mp.mpf("1e-4") * t * decrement:
                break
            t /= 2
            assert t > mp.mpf(10) ** -50, "Nash reference: no descent"
        a = cand
    raise AssertionError("Nash reference did not converge")
