"""Sentences of the report generated from the numbers (issue 11): nothing here is hand-written
about a result; every clause is chosen by a comparison of the numbers it is given."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mtlbench.report.verdict_stats import (
    LR_RULE,
    MIN_WEIGHT_MOVE,
    DeltaMInterval,
    detectable_difference,
    seeds_to_detect,
)

ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    """One method tested against a reference in a named family (lower metric is better)."""

    method: str
    reference: str
    family: str
    mean_diff: float  # method - reference, primary metric
    p_holm: float  # Holm-adjusted within ``family``


def _fmt(x: float) -> str:
    return f"{x:+.2f}"


def beats_sentence(comparisons: Sequence[Comparison], reference: str) -> str:
    """Whether any method beats ``reference`` beyond noise (lower and Holm p < alpha)."""
    mine = [c for c in comparisons if c.reference == reference]
    if not mine:
        return f"No method was tested against {reference}."
    family = mine[0].family
    winners = [c for c in mine if c.mean_diff < 0 and math.isfinite(c.p_holm) and c.p_holm < ALPHA]
    losers = [c for c in mine if c.mean_diff > 0 and math.isfinite(c.p_holm) and c.p_holm < ALPHA]
    if winners:
        names = ", ".join(
            f"{c.method} ({_fmt(c.mean_diff)} points, Holm p = {c.p_holm:.3g})"
            for c in sorted(winners, key=lambda c: c.mean_diff)
        )
        head = f"Beyond noise, {len(winners)} of {len(mine)} methods beat {reference}: {names}"
    else:
        head = (
            f"No adaptive method beats {reference} beyond noise "
            f"(0 of {len(mine)} with a lower delta-m at Holm-adjusted p < {ALPHA})"
        )
    tail = f"; {len(losers)} are worse beyond noise" if losers else ""
    return f"{head}{tail} (family \u201c{family}\u201d)."


def interval_sentence(intervals: Mapping[str, DeltaMInterval]) -> str:
    """Which method the delta-m intervals used, and which intervals include 0."""
    methods = sorted({iv.method for iv in intervals.values()})
    how = {
        "seed-paired": "seed-paired (each seed's delta-m uses the baselines of the same seed)",
        "delta method": "by the delta method with Welch-Satterthwaite degrees of freedom "
        "(baseline seeds differ from the method's)",
        "baseline exact": "with the baselines treated as exact",
    }
    parts = "; ".join(how[m] for m in methods)
    above = sorted(k for k, iv in intervals.items() if math.isfinite(iv.half) and iv.low > 0)
    below = sorted(k for k, iv in intervals.items() if math.isfinite(iv.half) and iv.high < 0)
    across = sorted(
        k for k, iv in intervals.items() if math.isfinite(iv.half) and iv.low <= 0 <= iv.high
    )
    return (
        "Delta-m 95% intervals include the single-task baselines' seed variance, computed "
        f"{parts}. "
        f"{len(above)} lie above 0, {len(below)} below 0, {len(across)} include 0"
        + (f" ({', '.join(across)})" if across else "")
        + "."
    )


def power_sentence(paired_sds: Sequence[float], n_seeds: int, target: float = 2.0) -> str:
    """The smallest difference the seeds could detect (median paired spread) and the seeds
    needed to detect ``target`` points (80% power, two-sided alpha 0.05)."""
    sds = sorted(s for s in paired_sds if math.isfinite(s))
    if not sds or n_seeds < 2:
        return "With fewer than two paired seeds the study has no power estimate."
    mid = sds[len(sds) // 2] if len(sds) % 2 else (sds[len(sds) // 2 - 1] + sds[len(sds) // 2]) / 2
    mdd = detectable_difference(mid, n_seeds)
    need = seeds_to_detect(target, mid)
    need_text = f"{need} seeds" if need is not None else "more than 10,000 seeds"
    return (
        f"With {n_seeds} seeds and the median paired spread of delta-m differences "
        f"(SD {mid:.2f} points over {len(sds)} comparisons), the paired tests detect differences "
        f"of about {mdd:.1f} points or more (80% power, alpha {ALPHA}); detecting "
        f"{target:g} points would take {need_text}."
    )


def weights_sentence(moves: Mapping[str, float]) -> str | None:
    """Flag learned-weight methods whose weights moved < 10% from their start."""
    still = sorted(k for k, v in moves.items() if math.isfinite(v) and v < MIN_WEIGHT_MOVE)
    if not still:
        return None
    items = ", ".join(f"{k} ({100 * moves[k]:.0f}%)" for k in still)
    return (
        f"Learned weights that barely moved (< {100 * MIN_WEIGHT_MOVE:.0f}% from their start): "
        f"{items}; these behaved as the fixed weighting of their initial values."
    )


def edge_sentence(edges: Mapping[str, str]) -> str | None:
    if not edges:
        return None
    items = ", ".join(f"{k} ({v})" for k, v in sorted(edges.items()))
    return (
        f"The chosen lr is still at an edge of the grid for {len(edges)} methods: {items}; "
        "their best lr may lie outside it."
    )


def selection_sentence(seeds: Mapping[str, tuple[int, ...]], n_strategies: int) -> str:
    """``seeds[strategy]``: the seeds its lrs were compared on, fewer than its chosen lr ran."""
    by_set: dict[tuple[int, ...], list[str]] = {}
    for name, common in seeds.items():
        by_set.setdefault(common, []).append(name)
    parts = []
    for common, names in sorted(by_set.items()):
        label = "seed" if len(common) == 1 else "seeds"
        who = (
            f"all {len(names)} strategies"
            if len(names) == n_strategies > 1
            else ", ".join(sorted(names))
        )
        parts.append(f"{label} {', '.join(map(str, common))} for {who}")
    return (
        f"The learning rates were compared on {'; '.join(parts)}: the seeds every lr ran. The "
        "other seeds ran only at the chosen lr (a two-stage study), so the reported means and "
        "intervals use every seed, but the lr was selected before those seeds were seen."
    )


def failed_sentence(failed: Mapping[str, tuple[int, int]]) -> str:
    """``failed[method] = (failed seeds at the chosen lr, seeds)``."""
    bad = sorted(k for k, (f, _) in failed.items() if f > 0)
    rule = LR_RULE
    if not bad:
        return f"No seed diverged or failed at any chosen lr. {rule}"
    items = ", ".join(f"{k} ({failed[k][0]}/{failed[k][1]})" for k in bad)
    return f"Seeds that diverged or failed at the chosen lr: {items}. {rule}"
