"""The toy's Pareto set in the plane and the distance of a point to it.

Why the set is a curve below the x1 axis: above it every point has one loss >= 0 (the two
log-valleys are 5 or more apart), while below it both bowls reach about -20, so every Pareto point
lies where ``up = 0``, ``f_i = c(x2) * q_i`` with ``c(x2) = tanh(-x2/2)``. There the front is
convex (``sqrt(f1 + 20) + sqrt(f2 + 20)`` is constant along x2 = const), so each Pareto point
minimises ``mu * f1 / scale + (1 - mu) * f2`` for one ``mu`` in [0, 1] (the scale of f1 only
re-labels ``mu``: the set does not depend on it). Minimising over x1 gives ``x1 = 14 mu - 7`` and
leaves ``19.6 mu (1 - mu)`` of the two squares; over x2 it leaves the one-dimensional problem

    x2*(mu) = argmin_{x2 < 0} tanh(-x2/2) * (19.6 mu (1 - mu) + 0.01 (x2 + 8)^2 - 20)

whose derivative changes sign exactly once in [-10, -7] (negative at -10, positive at -7 for every
mu). We bisect it in float64. The set is a shallow arc from (-7, -8.4345) (f2's minimum) through
(0, -8.3551) to (7, -8.4345) (f1's minimum). The papers draw the straight segment x2 = -8.3552,
the arc's height at x1 = 0 only: near the ends it lies 0.08 above the true set.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

X2_BRACKET = (-10.0, -7.0)
DEFAULT_SAMPLES = 4001  # polyline vertices: chord error 5e-9 on this almost straight arc


def _slope(x2: NDArray[np.float64], k: NDArray[np.float64]) -> NDArray[np.float64]:
    """d/dx2 of tanh(-x2/2) * (k + 0.01 (x2 + 8)^2 - 20)."""
    sech2 = 1.0 / np.cosh(x2 / 2.0) ** 2
    bracket = k + 0.01 * (x2 + 8.0) ** 2 - 20.0
    return -0.5 * sech2 * bracket + np.tanh(-x2 / 2.0) * 0.02 * (x2 + 8.0)


def x2_star(mu: NDArray[np.float64] | float) -> NDArray[np.float64]:
    """x2 of the Pareto point with weight ``mu`` on f1 (vectorised bisection to float64)."""
    m = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    if np.any((m < 0.0) | (m > 1.0)):
        raise ValueError(f"mu must lie in [0, 1]; got {m.min():g} .. {m.max():g}")
    k = 19.6 * m * (1.0 - m)
    lo = np.full_like(m, X2_BRACKET[0])
    hi = np.full_like(m, X2_BRACKET[1])
    for _ in range(80):  # 3 / 2^80 is far below float64 resolution
        mid = 0.5 * (lo + hi)
        negative = _slope(mid, k) < 0.0
        lo = np.where(negative, mid, lo)
        hi = np.where(negative, hi, mid)
    return 0.5 * (lo + hi)


def pareto_set(n: int = DEFAULT_SAMPLES) -> NDArray[np.float64]:
    """``[n, 2]`` points of the Pareto set, from f2's minimum (mu = 0) to f1's (mu = 1)."""
    if n < 2:
        raise ValueError(f"need at least 2 samples of the Pareto set, got {n}")
    mu = np.linspace(0.0, 1.0, n)
    return np.stack([14.0 * mu - 7.0, x2_star(mu)], axis=1)


def distance(points: NDArray[np.float64], n: int = DEFAULT_SAMPLES) -> NDArray[np.float64]:
    """Euclidean distance of each of ``points`` (``[N, 2]`` or ``[2]``) to the Pareto set."""
    p = np.asarray(points, dtype=np.float64)
    single = p.ndim == 1
    p = p.reshape(-1, 2)
    curve = pareto_set(n)
    a, b = curve[:-1], curve[1:]
    ab = b - a
    ab2 = (ab * ab).sum(-1)
    d = np.empty(len(p))
    # Project every point on every segment, clip to the segment, keep the nearest; in chunks
    # so that the [chunk, segments, 2] temporaries stay near 10 MB.
    chunk = 256
    for lo in range(0, len(p), chunk):
        q = p[lo : lo + chunk, None, :]
        t = np.clip(((q - a[None]) * ab[None]).sum(-1) / ab2, 0.0, 1.0)
        nearest = a[None] + t[..., None] * ab[None]
        d[lo : lo + chunk] = np.sqrt(((q - nearest) ** 2).sum(-1)).min(axis=1)
    return np.asarray(d[0] if single else d, dtype=np.float64)


def front(scale: float = 1.0, n: int = DEFAULT_SAMPLES) -> NDArray[np.float64]:
    """``[n, 2]`` losses ``(scale * f1, f2)`` along the Pareto set (the Pareto front)."""
    import torch

    from mtlbench.toy.problem import objectives

    pts = torch.from_numpy(pareto_set(n))
    return objectives(pts, scale).numpy()
