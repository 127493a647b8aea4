"""Small statistics for the report: t confidence intervals, the paired test against a reference,
Holm's adjustment and 2-D Pareto fronts. Pure functions of numbers (no MLflow, no plotting)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Symmetric:
    """A symmetric interval ``mean ± half``."""

    mean: float
    half: float

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half


@dataclass(frozen=True)
class Interval(Symmetric):
    """Mean of ``n`` values and its two-sided t confidence interval ``mean ± half``.

    ``half`` is NaN for fewer than two values: one seed says nothing about seed variance.
    """

    n: int
    std: float


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """``mean ± t_{(1+c)/2, n-1} * s / sqrt(n)`` over the finite values (s: sample std)."""
    from scipy import stats

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, 0, math.nan)
    if n == 1:
        return Interval(float(x[0]), math.nan, 1, math.nan)
    std = float(x.std(ddof=1))
    t = float(stats.t.ppf((1 + confidence) / 2, df=n - 1))
    return Interval(float(x.mean()), t * std / math.sqrt(n), n, std)


@dataclass(frozen=True)
class PairedTest:
    """Two-sided paired t-test of ``a - b`` over the keys (seeds) both have."""

    n_pairs: int
    mean_diff: float
    p_value: float


def paired_t_test(a: Mapping[int, float], b: Mapping[int, float]) -> PairedTest:
    """Pair ``a`` and ``b`` by key (seed); NaN p-value below two pairs or with zero variance
    of the differences (identical runs: the test is undefined, not significant)."""
    from scipy import stats

    keys = sorted(
        k for k in set(a) & set(b) if math.isfinite(float(a[k])) and math.isfinite(float(b[k]))
    )
    diffs = np.array([float(a[k]) - float(b[k]) for k in keys])
    if len(keys) == 0:
        return PairedTest(0, math.nan, math.nan)
    mean_diff = float(diffs.mean())
    scale = max(1.0, float(np.abs([float(a[k]) for k in keys]).max()))
    # Differences equal up to rounding (e.g. identical runs) make t undefined, not huge.
    if len(keys) < 2 or float(diffs.std(ddof=1)) <= 1e-9 * scale:
        return PairedTest(len(keys), mean_diff, math.nan)
    result = stats.ttest_rel([float(a[k]) for k in keys], [float(b[k]) for k in keys])
    return PairedTest(len(keys), mean_diff, float(result.pvalue))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1); NaN stays NaN and
    does not count as a comparison."""
    finite = [(p, i) for i, p in enumerate(p_values) if math.isfinite(p)]
    finite.sort()
    m = len(finite)
    out = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def pareto_front(
    points: pd.DataFrame, x: str, y: str, *, x_higher: bool, y_higher: bool
) -> pd.DataFrame:
    """The rows of ``points`` not dominated in (``x``, ``y``), sorted by ``x``.

    A point dominates another if it is at least as good on both coordinates and better on one;
    ``*_higher`` gives each coordinate's direction. Rows with a NaN coordinate are dropped;
    exact duplicates are all kept (neither dominates the other).
    """
    if x not in points or y not in points:
        raise ValueError(f"points need columns {x!r} and {y!r}; got {', '.join(points.columns)}")
    pts = points[np.isfinite(points[x].astype(float)) & np.isfinite(points[y].astype(float))]
    # Flip signs so that lower is better on both axes.
    gx = (-1.0 if x_higher else 1.0) * pts[x].to_numpy(dtype=float)
    gy = (-1.0 if y_higher else 1.0) * pts[y].to_numpy(dtype=float)
    keep = []
    for i in range(len(pts)):
        dominated = np.any((gx <= gx[i]) & (gy <= gy[i]) & ((gx < gx[i]) | (gy < gy[i])))
        keep.append(not dominated)
    return pts[np.array(keep, dtype=bool)].sort_values(x).reset_index(drop=True)
