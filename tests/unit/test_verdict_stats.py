"""Numbers behind the verdicts, against references computed here (fractions, mpmath, closed-form
t quantiles for 2 degrees of freedom, printed t tables)."""

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from scipy import stats

from mtlbench.report.verdict_stats import (
    choose_lr,
    delta_m_interval,
    detectable_difference,
    holm_by_family,
    interior_simplex,
    relative_step_cost,
    seeds_to_detect,
    static_spec,
    weight_move,
    weights_moved,
)

HIGHER = {"age": False, "race": True}
# Method metrics per seed, single-task baselines per task and seed.
METHOD = {
    0: {"age": 7.0, "race": 0.60},
    1: {"age": 7.5, "race": 0.55},
    2: {"age": 6.5, "race": 0.62},
}
BASE = {"age": {0: 7.2, 1: 7.0, 2: 7.4}, "race": {0: 0.58, 1: 0.50, 2: 0.65}}


def _t2(p: float) -> float:
    # Student t quantile for 2 degrees of freedom, closed form: (2p - 1) / sqrt(2 p (1 - p)).
    return (2 * p - 1) / math.sqrt(2 * p * (1 - p))


def _dm(m: dict, b: dict) -> Fraction:
    # delta-m from its definition, exact.
    total = Fraction(0)
    for task, bt in b.items():
        sign = -1 if HIGHER[task] else 1
        total += sign * (Fraction(str(m[task])) - Fraction(str(bt))) / Fraction(str(bt))
    return 100 * total / len(b)


def test_seed_paired_interval_includes_baseline_noise() -> None:
    per_seed = [_dm(METHOD[s], {t: BASE[t][s] for t in BASE}) for s in (0, 1, 2)]
    mean = sum(per_seed) / 3
    var = sum((v - mean) ** 2 for v in per_seed) / 2
    half = _t2(0.975) * math.sqrt(float(var)) / math.sqrt(3)
    got = delta_m_interval(METHOD, BASE, HIGHER)
    assert got.method == "seed-paired"
    assert got.mean == pytest.approx(float(mean), rel=1e-12)
    assert got.half == pytest.approx(half, rel=1e-9)


def test_delta_method_when_seeds_do_not_match() -> None:
    base = {"age": {10: 7.2, 11: 7.0, 12: 7.4}, "race": {10: 0.58, 11: 0.50}}
    b_mean = {t: sum(Fraction(str(v)) for v in d.values()) / len(d) for t, d in base.items()}
    per_seed = [_dm(METHOD[s], b_mean) for s in (0, 1, 2)]
    mean = sum(per_seed) / 3
    v_method = sum((v - mean) ** 2 for v in per_seed) / 2 / 3
    m_bar = {t: sum(Fraction(str(METHOD[s][t])) for s in (0, 1, 2)) / 3 for t in BASE}

    def dm_of(task: str):  # delta-m of the mean method as a function of one baseline mean
        def f(b):
            total = mpmath.mpf(0)
            for t in base:
                bt = b if t == task else mpmath.mpf(b_mean[t].numerator) / b_mean[t].denominator
                mt = mpmath.mpf(m_bar[t].numerator) / m_bar[t].denominator
                total += (-1 if HIGHER[t] else 1) * (mt - bt) / bt
            return 100 * total / len(base)

        return f

    parts = [(float(v_method), 2.0)]
    for t, d in base.items():
        vals = [Fraction(str(v)) for v in d.values()]
        mu = sum(vals) / len(vals)
        s2 = sum((v - mu) ** 2 for v in vals) / (len(vals) - 1)
        deriv = mpmath.diff(dm_of(t), mpmath.mpf(mu.numerator) / mu.denominator)
        parts.append(
            (
                float(deriv**2 * (mpmath.mpf(s2.numerator) / s2.denominator) / len(vals)),
                len(vals) - 1.0,
            )
        )
    var = sum(v for v, _ in parts)
    df = var**2 / sum(v**2 / d for v, d in parts)
    got = delta_m_interval(METHOD, base, HIGHER)
    assert got.method == "delta method"
    assert got.mean == pytest.approx(float(mean), rel=1e-12)
    assert got.df == pytest.approx(df, rel=1e-9)
    assert got.half == pytest.approx(stats.t.ppf(0.975, df) * math.sqrt(var), rel=1e-9)


def test_exact_baselines_give_the_plain_t_interval_and_noise_widens_it() -> None:
    exact = {"age": {10: 7.2, 11: 7.2}, "race": {10: 0.58, 11: 0.58}}
    per_seed = [float(_dm(METHOD[s], {"age": 7.2, "race": 0.58})) for s in (0, 1, 2)]
    half = _t2(0.975) * float(np.std(per_seed, ddof=1)) / math.sqrt(3)
    got = delta_m_interval(METHOD, exact, HIGHER)
    assert got.half == pytest.approx(half, rel=1e-9)
    noisy = {"age": {10: 7.0, 11: 7.4}, "race": {10: 0.50, 11: 0.66}}
    assert delta_m_interval(METHOD, noisy, HIGHER).half > 1.5 * half


def test_failed_seeds_count_against_their_lr() -> None:
    # 1e-3: best surviving mean but one seed diverged; 3e-4 lost none.
    assert choose_lr({1e-3: (1, 0.20), 3e-4: (0, 0.50)}) == 3e-4
    assert choose_lr({1e-3: (1, 0.20), 3e-4: (1, 0.50)}) == 1e-3
    assert choose_lr({1e-3: (3, math.nan), 3e-4: (2, 0.9)}) == 3e-4


def test_holm_within_named_families() -> None:
    tests = [
        ("adaptive", 0.01),
        ("adaptive", 0.04),
        ("static", 0.02),
        ("adaptive", 0.03),
        ("static", 0.5),
    ]
    # adaptive: sorted 0.01, 0.03, 0.04 -> 3*0.01, max(.03, 2*0.03), max(.06, 1*0.04)
    # static: 2*0.02, max(0.04, 0.5)
    assert holm_by_family(tests) == pytest.approx([0.03, 0.06, 0.04, 0.06, 0.5])


def test_detectable_difference_and_seeds() -> None:
    # n = 3 (2 df): closed-form quantiles.
    assert detectable_difference(1.0, 3) == pytest.approx(
        (_t2(0.975) + _t2(0.8)) / math.sqrt(3), rel=1e-9
    )
    # printed tables: t(.975; 3) = 3.182446, t(.80; 3) = 0.978472, t(.975; 4) = 2.776445,
    # t(.80; 4) = 0.940965 -> sd 1: n=4 detects 2.0805 (> 2), n=5 detects 1.6625.
    assert detectable_difference(1.0, 4) == pytest.approx((3.182446 + 0.978472) / 2, rel=1e-5)
    assert seeds_to_detect(2.0, 1.0) == 5
    assert seeds_to_detect(2.0, math.nan) is None
    assert math.isnan(detectable_difference(1.0, 1))


def test_interior_simplex_has_no_boundary_point() -> None:
    pts = interior_simplex(3, 5)
    parts = {(3, 1, 1), (1, 3, 1), (1, 1, 3), (2, 2, 1), (2, 1, 2), (1, 2, 2)}
    assert {tuple(round(w * 5 / 3) for w in p) for p in pts} == parts and len(pts) == 6
    assert all(min(p) > 0 and sum(p) == pytest.approx(3) for p in pts)
    assert interior_simplex(3, 6)[-1] != (1.0, 1.0, 1.0) and (1.0, 1.0, 1.0) in interior_simplex(
        3, 6
    )
    assert len(interior_simplex(3, 10)) == math.comb(9, 2)
    with pytest.raises(ValueError, match="--static-sweep 2"):
        interior_simplex(3, 2)
    assert static_spec((1.8, 0.6, 0.6)) == "static:1.8,0.6,0.6"


def test_cost_and_weight_movement() -> None:
    cost = relative_step_cost({"sum": 100.0, "pcgrad": 40.0, "famo": 78.125})
    assert cost == {"sum": 1.0, "pcgrad": 2.5, "famo": 1.28}
    with pytest.raises(ValueError, match="sum"):
        relative_step_cost({"famo": 1.0})
    # uncertainty in the committed study: 0.50 -> 0.47, 1.00 -> 0.97, 1.00 -> 0.95: 6% < 10%.
    move = weight_move([0.5, 1.0, 1.0], [0.47, 0.97, 0.95])
    assert move == pytest.approx(0.06) and not weights_moved(move)
    assert weights_moved(weight_move([0.5, 1.0], [0.06, 1.0]))


def test_static_sweep_config_is_validated() -> None:
    from mtlbench.config import ConfigError, SearchConfig

    assert SearchConfig(static_sweep=5).static_sweep == 5
    with pytest.raises(ConfigError, match="static_sweep"):
        SearchConfig(static_sweep=1)


def test_families_follow_the_declared_fixed_weights(monkeypatch: pytest.MonkeyPatch):
    from mtlbench.report import verdict_stats
    from mtlbench.weighting import registry
    from mtlbench.weighting.sum import Sum

    assert {n for n in registry.available() if registry.get(n).fixed_weights} == {
        "mean",
        "static",
        "stl",
        "sum",
    }
    assert verdict_stats.family("mean") == verdict_stats.FAMILY_FIXED
    assert verdict_stats.family("dwa") == verdict_stats.FAMILY_SUM
    # a plug-in not installed where the report runs is tested with the methods (stricter)
    assert verdict_stats.family("someones_method") == verdict_stats.FAMILY_SUM

    # a plug-in that declares fixed weights is a fixed weighting, whatever its name
    class Halves(Sum):
        name = "halves"

    monkeypatch.setitem(registry._REGISTRY, "halves", Halves)
    verdict_stats.fixed_weights.cache_clear()
    assert verdict_stats.family("halves") == verdict_stats.FAMILY_FIXED
    monkeypatch.setattr(Halves, "fixed_weights", False)
    verdict_stats.fixed_weights.cache_clear()
    assert verdict_stats.family("halves") == verdict_stats.FAMILY_SUM
    verdict_stats.fixed_weights.cache_clear()
