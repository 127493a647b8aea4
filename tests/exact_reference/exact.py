"""Exact Gramians of float32 rows and small 60-digit linear algebra helpers."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import mpmath as mp
import numpy as np

mp.mp.dps = 60
EPS32 = float(np.finfo(np.float32).eps)
FLOOR = 64 * EPS32  # float32 rounding floor, relative to sum_t |a_t| ||g_t||
REL = 1e-4  # required relative accuracy
F64_FLOOR = 2.0**-40  # float64 round-off of the T x T algebra, relative to max_t ||g_t||
TINY = mp.mpf(10) ** -40  # "zero" in 60-digit arithmetic, relative


def exact_gram(rows: np.ndarray) -> mp.matrix:
    """``J J^T`` of float32 rows, exact (integer arithmetic), as a 60-digit matrix."""
    x = np.asarray(rows, dtype=np.float32).astype(np.float64)
    mant, expo = np.frexp(x)
    ints = (mant * 2.0**24).astype(np.int64)  # exact: float32 has a 24-bit significand
    expo = expo - 24
    base = int(expo[x != 0].min()) if (x != 0).any() else 0
    shifts = np.where(x != 0, expo - base, 0)
    big = np.array(
        [int(i) << int(s) for i, s in zip(ints.ravel(), shifts.ravel(), strict=True)],
        dtype=object,
    ).reshape(x.shape)
    n = len(x)
    gram = mp.matrix(n, n)
    factor = mp.ldexp(mp.mpf(1), 2 * base)
    for i in range(n):
        for j in range(i, n):
            value = mp.mpf(int(np.dot(big[i], big[j]))) * factor
            gram[i, j] = gram[j, i] = value
    return gram


def to_np(x: mp.matrix | list) -> np.ndarray:
    if isinstance(x, mp.matrix):
        return np.array([[float(x[i, j]) for j in range(x.cols)] for i in range(x.rows)])
    return np.array([float(v) for v in x])


def vec(values: list) -> mp.matrix:
    return mp.matrix([mp.mpf(v) for v in values])


def sub(gram: mp.matrix, rows: list[int], cols: list[int]) -> mp.matrix:
    out = mp.matrix(len(rows), len(cols))
    for a, i in enumerate(rows):
        for b, j in enumerate(cols):
            out[a, b] = gram[i, j]
    return out


def det(a: mp.matrix) -> mp.mpf:
    """Determinant; 0 where mpmath's LU meets an exactly zero pivot (it raises then)."""
    try:
        return mp.det(a)
    except (TypeError, ZeroDivisionError):
        return mp.mpf(0)


def solve(a: mp.matrix, b: mp.matrix) -> mp.matrix | None:
    """``a^-1 b``, or None when ``a`` (after unit-diagonal scaling) is singular to 40 digits."""
    n = a.rows
    scale = [1 / mp.sqrt(a[i, i]) if a[i, i] > 0 else mp.mpf(1) for i in range(n)]
    unit = mp.matrix(n, n)
    for i in range(n):
        for j in range(n):
            unit[i, j] = a[i, j] * scale[i] * scale[j]
    if abs(det(unit)) < TINY:
        return None
    rhs = mp.matrix([b[i] * scale[i] for i in range(n)])
    y = mp.lu_solve(unit, rhs)
    return mp.matrix([y[i] * scale[i] for i in range(n)])


def quad(gram: mp.matrix, a: list) -> mp.mpf:
    n = gram.rows
    return mp.fsum(a[i] * gram[i, j] * a[j] for i in range(n) for j in range(n))


def gdot(gram: mp.matrix, a: list) -> list:
    """``G a`` as a list."""
    n = gram.rows
    return [mp.fsum(gram[i, j] * a[j] for j in range(n)) for i in range(n)]


def subsets(items: list[int]) -> Iterator[list[int]]:
    for size in range(1, len(items) + 1):
        for face in itertools.combinations(items, size):
            yield list(face)


@dataclass(frozen=True)
class Expected:
    """A reference update ``d = J^T a`` (``weights`` a, 60 digits, as floats), or none."""

    weights: np.ndarray | None  # None: the method's problem has no solution
    note: str = ""


def direction(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.asarray(weights, dtype=np.float64) @ np.asarray(rows, dtype=np.float64)


def floor(rows: np.ndarray, *weights: np.ndarray | None) -> float:
    """What float32 rounding of an update ``J^T a`` can account for: ``FLOOR sum_t |a_t|
    ||g_t||`` for the reference's weights or the implementation's (when ``J^T a`` is not
    unique, either ``a`` is valid), plus float64 round-off of the T x T algebra."""
    norms = np.linalg.norm(np.asarray(rows, dtype=np.float64), axis=1)
    sizes = [
        float(np.abs(np.asarray(w, dtype=np.float64)) @ norms) for w in weights if w is not None
    ]
    return FLOOR * max(sizes, default=0.0) + F64_FLOOR * float(norms.max(initial=0.0))


def assert_close(
    label: str,
    got: np.ndarray,
    rows: np.ndarray,
    weights: np.ndarray,
    rel: float = REL,
    got_weights: np.ndarray | None = None,
) -> None:
    """``||got - J^T a|| <= rel ||J^T a|| + floor``."""
    want = direction(rows, weights)
    floor_ = floor(rows, weights, got_weights)
    err = float(np.linalg.norm(np.asarray(got, dtype=np.float64) - want))
    bound = rel * float(np.linalg.norm(want)) + floor_
    assert np.all(np.isfinite(got)), f"{label}: non-finite output"
    assert err <= bound, (
        f"{label}: ||d - d_ref|| = {err:.3e} > {bound:.3e} (||d_ref|| = "
        f"{np.linalg.norm(want):.3e}, weights {weights.tolist()})"
    )
