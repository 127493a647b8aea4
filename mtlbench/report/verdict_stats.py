"""Statistics behind the report's verdicts (issue 11): pure functions of numbers.

* :func:`delta_m_interval`: a delta-m interval that includes the single-task baselines' seed
  variance, seed-paired when the baselines ran the method's seeds, else by the delta method.
* :func:`lr_rank` : the documented rule by which a diverged or failed seed counts against its lr.
* :func:`holm_by_family`: Holm's adjustment within each named test family.
* :func:`detectable_difference` / :func:`seeds_to_detect`: the power statements.
* :func:`interior_simplex` : the interior static sweep (every weight > 0).
* :func:`relative_step_cost`, :func:`weights_moved`: cost and learned-weight checks.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np

from mtlbench.report.stats import CONFIDENCE, Symmetric, holm

Method = Literal["seed-paired", "delta method", "baseline exact"]
# A learned weighting whose weights moved less than this (relative, largest over tasks) from
# their start is flagged: it behaved as the fixed weighting of its initial values.
MIN_WEIGHT_MOVE = 0.10


@dataclass(frozen=True)
class DeltaMInterval(Symmetric):
    """``half`` is NaN when the interval is undefined (one seed and no baseline spread)."""

    df: float
    method: Method


def _delta_m(
    metrics: Mapping[str, float], baselines: Mapping[str, float], higher: Mapping[str, bool]
) -> float:
    total = 0.0
    for task, b in baselines.items():
        sign = -1.0 if higher[task] else 1.0
        total += sign * (metrics[task] - b) / b
    return 100.0 * total / len(baselines)


def delta_m_interval(
    method: Mapping[int, Mapping[str, float]],
    baselines: Mapping[str, Mapping[int, float]],
    higher: Mapping[str, bool],
    confidence: float = CONFIDENCE,
) -> DeltaMInterval:
    """Mean delta-m of a method over its seeds and a t interval that includes the baselines'
    seed variance.

    ``method[seed][task]``: the method's test metric; ``baselines[task][seed]``: the single-task
    baseline's test metric at its chosen lr; ``higher[task]``: direction.

    * **seed-paired** when every method seed has a baseline run of every task with the same
      seed: ``delta_m_s`` uses seed s's baselines, and the t interval over seeds carries both
      sources of noise (and their pairing through the shared seed).
    * **delta method** otherwise: ``D = f(Mbar, Bbar)`` with the baseline means; the variance
      is the method's part (the seed variance of ``delta_m`` against the mean baselines, which
      keeps the correlation between a run's tasks) plus ``sum_t (dD/dB_t)^2 s_t^2 / n_t`` for
      the independently trained baselines, ``dD/dB_t = -+ 100/T * M_t / B_t^2``; degrees of
      freedom by Welch-Satterthwaite.
    """
    from scipy import stats

    seeds = sorted(method)
    if not seeds:
        raise ValueError("delta_m_interval needs at least one seed of the method")
    tasks = list(baselines)
    q = (1 + confidence) / 2
    paired = all(all(s in baselines[t] for t in tasks) for s in seeds)
    if paired:
        values = [_delta_m(method[s], {t: baselines[t][s] for t in tasks}, higher) for s in seeds]
        n = len(values)
        mean = float(np.mean(values))
        if n < 2:
            return DeltaMInterval(mean, math.nan, math.nan, "seed-paired")
        sd = float(np.std(values, ddof=1))
        half = float(stats.t.ppf(q, n - 1)) * sd / math.sqrt(n)
        return DeltaMInterval(mean, half, float(n - 1), "seed-paired")
    base_mean = {t: float(np.mean(list(baselines[t].values()))) for t in tasks}
    per_seed = [_delta_m(method[s], base_mean, higher) for s in seeds]
    n = len(per_seed)
    mean = float(np.mean(per_seed))
    parts: list[tuple[float, float]] = []  # (variance contribution, its degrees of freedom)
    if n >= 2:
        parts.append((float(np.var(per_seed, ddof=1)) / n, float(n - 1)))
    m_bar = {t: float(np.mean([method[s][t] for s in seeds])) for t in tasks}
    for t in tasks:
        values = list(baselines[t].values())
        if len(values) < 2:
            continue
        sign = -1.0 if higher[t] else 1.0
        grad = -sign * 100.0 / len(tasks) * m_bar[t] / base_mean[t] ** 2
        parts.append((grad**2 * float(np.var(values, ddof=1)) / len(values), len(values) - 1.0))
    var = sum(v for v, _ in parts)
    if not parts or var <= 0:
        return DeltaMInterval(mean, math.nan, math.nan, "delta method")
    df = var**2 / sum(v**2 / d for v, d in parts)
    half = float(stats.t.ppf(q, df)) * math.sqrt(var)
    return DeltaMInterval(mean, half, df, "delta method")


# --- failed seeds and the lr choice ------------------------------------------------------------
LR_RULE = (
    "A learning rate is judged on all the seeds every lr of the method ran (in a two-stage study, "
    "the first stage's): lrs are ranked first by the number of those seeds that diverged or "
    "failed (fewer is better), then by the mean validation score of the seeds that finished; so "
    "an lr where any seed failed can win only if every lr lost at least as many seeds. The "
    "leaderboard shows the failed seeds of the chosen lr (k/n), over all its seeds."
)


def lr_rank(n_failed: int, mean_val_score: float) -> tuple[int, float]:
    """Sort key of an lr under :data:`LR_RULE` (lower is better)."""
    score = mean_val_score if math.isfinite(mean_val_score) else math.inf
    return (n_failed, score)


def choose_lr(candidates: Mapping[float, tuple[int, float]]) -> float:
    """``candidates[lr] = (n_failed, mean validation score of the finished seeds)``."""
    if not candidates:
        raise ValueError("choose_lr needs at least one learning rate")
    return min(sorted(candidates), key=lambda lr: lr_rank(*candidates[lr]))


# --- multiple testing --------------------------------------------------------------------------
# The named test families (experiments/utkface-cpu.toml); Holm adjusts within each.
FAMILY_SUM = "adaptive vs sum"
FAMILY_STATIC = "adaptive vs best static"
FAMILY_SWEEP = "static sweep vs sum"
FAMILY_BOUNDARY = "boundary static points vs sum"  # a weight 0 leaves a head untrained
FAMILY_FIXED = "fixed weightings vs sum"
FAMILY_SINGLE = "single-task"
# Fixed weightings (``Strategy.fixed_weights``: ``sum``, ``mean`` = ``sum`` / T) are leaderboard
# rows, not adaptive methods under test.


def static_weights(strategy: str) -> tuple[float, ...] | None:
    """The weights of a ``static:w1,...`` spec, None for any other strategy."""
    if not strategy.startswith("static:"):
        return None
    try:
        return tuple(float(w) for w in strategy.removeprefix("static:").split(","))
    except ValueError:
        return None


def family(strategy: str) -> str:
    """The family in which ``strategy``'s test against ``sum`` is adjusted."""
    if strategy.startswith("stl"):
        return FAMILY_SINGLE
    if strategy.startswith("static"):
        weights = static_weights(strategy)
        return FAMILY_SWEEP if weights and min(weights) > 0 else FAMILY_BOUNDARY
    return FAMILY_FIXED if fixed_weights(strategy) else FAMILY_SUM


@functools.cache
def fixed_weights(strategy: str) -> bool:
    """Whether the strategy declares fixed weights (``Strategy.fixed_weights``: sum, mean...).
    A name no registry of this process knows (a plug-in not installed here) counts as
    adaptive: it is then tested with the methods, the stricter family."""
    from mtlbench.weighting.registry import get, split_spec

    try:
        return get(split_spec(strategy)[0]).fixed_weights
    except ValueError:
        return False


def holm_by_family(tests: Sequence[tuple[str, float]]) -> list[float]:
    """Holm-adjusted p-values, adjusted within each family: ``tests[i] = (family, p)``."""
    out = [math.nan] * len(tests)
    for family in dict.fromkeys(f for f, _ in tests):
        idx = [i for i, (f, _) in enumerate(tests) if f == family]
        for i, p in zip(idx, holm([tests[i][1] for i in idx]), strict=True):
            out[i] = p
    return out


# --- power -------------------------------------------------------------------------------------
def detectable_difference(
    paired_sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest mean paired difference a two-sided paired t-test over ``n`` seeds detects with
    the given power: ``(t_{1-alpha/2, n-1} + t_{power, n-1}) * sd / sqrt(n)`` (the usual
    approximation that ignores the non-centrality's effect on the t distribution)."""
    from scipy import stats

    if n < 2 or not math.isfinite(paired_sd):
        return math.nan
    t = float(stats.t.ppf(1 - alpha / 2, n - 1)) + float(stats.t.ppf(power, n - 1))
    return t * paired_sd / math.sqrt(n)


def seeds_to_detect(
    difference: float,
    paired_sd: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    cap: int = 10_000,
) -> int | None:
    """Fewest seeds whose :func:`detectable_difference` is at most ``difference`` (None above
    ``cap`` or when the spread is unknown)."""
    if not math.isfinite(paired_sd) or difference <= 0:
        return None
    if paired_sd == 0:
        return 2
    for n in range(2, cap + 1):
        if detectable_difference(paired_sd, n, alpha=alpha, power=power) <= difference:
            return n
    return None


# --- the interior static sweep -----------------------------------------------------------------
def interior_simplex(n_tasks: int, divisions: int) -> list[tuple[float, ...]]:
    """Every point ``k / divisions`` of the simplex lattice with all ``k_t >= 1`` (the boundary,
    where a head is left untrained, is excluded), scaled so the weights sum to ``n_tasks``
    (so equal weights are ``sum``'s (1, ..., 1) and the effective lr matches). There are
    ``C(divisions - 1, n_tasks - 1)`` points."""
    if n_tasks < 2:
        raise ValueError(f"an interior sweep needs at least 2 tasks, got {n_tasks}")
    if divisions < n_tasks:
        raise ValueError(
            f"--static-sweep {divisions} has no interior point for {n_tasks} tasks; "
            f"valid: an integer >= {n_tasks}"
        )
    points = []
    # Stars and bars: cut positions 1..divisions-1 choose n_tasks-1 give positive parts.
    for cuts in combinations(range(1, divisions), n_tasks - 1):
        edges = (0, *cuts, divisions)
        parts = [edges[i + 1] - edges[i] for i in range(n_tasks)]
        points.append(tuple(n_tasks * p / divisions for p in parts))
    return sorted(points, reverse=True)


def static_spec(weights: Sequence[float]) -> str:
    return "static:" + ",".join(f"{w:.6g}" for w in weights)


def at_edge(grid: Sequence[float], lr: float) -> str | None:
    """``"low"``/``"high"`` when ``lr`` is the grid's smallest/largest value (a grid of one lr
    is at both edges: reported as ``"low"``), else None."""
    values = sorted(grid)
    if lr == values[0]:
        return "low"
    if lr == values[-1]:
        return "high"
    return None


# --- cost and learned weights ------------------------------------------------------------------
def relative_step_cost(throughput: Mapping[str, float], reference: str = "sum") -> dict[str, float]:
    """Per-step cost relative to ``reference`` from training throughputs (images/s) measured in
    the same study: ``throughput[reference] / throughput[method]`` (2.0 = twice as slow)."""
    if reference not in throughput or not throughput[reference] > 0:
        raise ValueError(f"no positive throughput of the reference {reference!r} in this study")
    ref = throughput[reference]
    return {k: ref / v if v > 0 else math.inf for k, v in throughput.items()}


def weight_move(start: Sequence[float], end: Sequence[float]) -> float:
    """Largest relative change of a learned weight: ``max_t |end_t / start_t - 1|``."""
    return max(abs(e / s - 1.0) for s, e in zip(start, end, strict=True))


def weights_moved(move: float) -> bool:
    return math.isfinite(move) and move >= MIN_WEIGHT_MOVE
