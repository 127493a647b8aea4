"""Small float64 helpers shared by the wave-2 strategies (simplex projection, unit Gramians).

Kept apart from :mod:`mtlbench.weighting._linalg` (whose signatures other strategies rely on);
everything here works on T x T or length-T arrays on the CPU.
"""

from __future__ import annotations

import numpy as np


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto ``{w >= 0, sum w = 1}`` (the sort-based algorithm of Held, Wolfe
    & Crowder 1974 / Duchi et al. 2008), exact up to float64 rounding."""
    v = np.asarray(v, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise ValueError(f"cannot project non-finite values onto the simplex: {v.tolist()}")
    # The projection is invariant to adding a constant to v: shifting the largest entry to
    # exactly 0 keeps the answer representable when |v| >> 1 (an exploding inner step).
    v = v - v.max()
    u = np.sort(v)[::-1]
    css = np.cumsum(u)
    k = np.arange(1, len(v) + 1)
    # k u_k - sum_{i<=k} u_i + 1 > 0; written so that k = 1 gives exactly 1 whatever the size
    # of v (the textbook u_k - (css_k - 1) / k loses the 1 to rounding when |v| > 1e16)
    rho = int(np.nonzero(k * u - css + 1.0 > 0)[0][-1])
    theta = (css[rho] - 1.0) / (rho + 1)
    return np.maximum(v - theta, 0.0)


def unit_gramian(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(G_hat, norms)``: the Gramian of the unit task gradients ``g_t / ||g_t||`` and the norms.

    Zero rows (norm exactly 0, or below 1e-30 of the largest) get a zero unit row, as in
    torchjd's ConFIG (``nan_to_num``)."""
    g = 0.5 * (np.asarray(gram, dtype=np.float64) + np.asarray(gram, dtype=np.float64).T)
    norms = np.sqrt(np.clip(np.diag(g), 0.0, None))
    floor = max(float(norms.max()), 1e-300) * 1e-15
    inv = np.where(norms > floor, 1.0 / np.where(norms > floor, norms, 1.0), 0.0)
    return g * inv[:, None] * inv[None, :], norms


def psd_pinv(matrix: np.ndarray, rcond: float) -> np.ndarray:
    """Pseudo-inverse of a symmetric positive semi-definite matrix; eigenvalues below
    ``rcond * max eigenvalue`` count as zero."""
    sym = 0.5 * (matrix + matrix.T)
    values, vectors = np.linalg.eigh(sym)
    top = max(float(values.max()), 0.0)
    keep = values > rcond * top if top > 0.0 else np.zeros_like(values, dtype=bool)
    inv = np.where(keep, 1.0 / np.where(keep, values, 1.0), 0.0)
    return (vectors * inv) @ vectors.T
