"""The report's verdicts for one group (issue 11): the best static weighting as a leaderboard
row, every adaptive method tested against ``sum`` and against it in named families (Holm
within each), delta-m intervals with the baselines' seed variance, the failed seeds of each
chosen lr, the power of the seeds, learned weights that did not move, step cost relative to
``sum`` and learning rates still at an edge of their grid.

The numbers come from :mod:`mtlbench.report.verdict_stats`, the sentences from
:mod:`mtlbench.report.verdict_text`; this module only picks the trials they are computed on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mtlbench.mtl.tasks import UTKFACE_TASKS, TaskSet
from mtlbench.report import stats, verdict_text
from mtlbench.report import tables as report
from mtlbench.report.verdict_stats import (
    FAMILY_STATIC,
    FAMILY_SUM,
    FAMILY_SWEEP,
    DeltaMInterval,
    at_edge,
    delta_m_interval,
    family,
    holm_by_family,
    relative_step_cost,
    static_weights,
)
from mtlbench.tracking import HOST_TAG

BEST_STATIC = "best static"
# Logged per epoch; a trial's row holds the last value (see tracking.load_trials).
THROUGHPUT = "throughput/train_img_s"
WEIGHT_MOVE = "strategy/weight_move"
EXTRA_METRICS: tuple[str, ...] = (THROUGHPUT, WEIGHT_MOVE, "time/train_s")
HOST = "host"  # the trial's machine (tag mtlbench.host; missing in runs older than the tag)


def extra_columns(trials: pd.DataFrame) -> pd.DataFrame:
    """``run_id`` and the cost and weight-move metrics of the raw trials frame (NaN where a
    trial did not log one), to merge onto the tidy trials."""
    out = pd.DataFrame({"run_id": trials["run_id"]})
    for col in EXTRA_METRICS:
        src = trials[col] if col in trials else pd.Series(np.nan, index=trials.index)
        out[col] = pd.to_numeric(src, errors="coerce")
    host = f"tag.{HOST_TAG}"
    out[HOST] = trials.get(host)
    return out


def best_static(summary: pd.DataFrame) -> str | None:
    """The interior static point (every weight > 0) with the best mean validation score at its
    chosen lr, chosen exactly like a method's lr: on validation, never on test."""
    best, best_score = None, math.inf
    for _, row in summary.iterrows():
        weights = static_weights(str(row["strategy"]))
        score = float(row.get("val_score", math.nan))
        if weights and min(weights) > 0 and math.isfinite(score) and score < best_score:
            best, best_score = str(row["strategy"]), score
    return best


def best_static_label(spec: str) -> str:
    return f"{BEST_STATIC} ({spec.removeprefix('static:')})"


def with_best_static(summary: pd.DataFrame, spec: str | None, primary: str) -> pd.DataFrame:
    """The summary with one more method row, ``best static (w)``: a copy of the chosen static
    point's row, ranked among the methods."""
    if spec is None or summary.empty:
        return summary
    row = summary[summary["strategy"] == spec].iloc[0].copy()
    row["strategy"], row["kind"], row["static_spec"] = (
        best_static_label(spec),
        report.KIND_METHOD,
        spec,
    )
    out = pd.concat([summary, row.to_frame().T], ignore_index=True)
    out = out.infer_objects()
    methods = (out["kind"] == report.KIND_METHOD) & pd.to_numeric(out[primary]).notna()
    out["rank"] = pd.to_numeric(out[primary]).where(methods).rank(method="min")
    order = out["kind"].map({report.KIND_METHOD: 0, report.KIND_SWEEP: 1, report.KIND_SINGLE: 2})
    out = out.assign(_k=order).sort_values(["_k", "rank", primary], na_position="last")
    return out.drop(columns="_k").reset_index(drop=True)


@dataclass
class Verdicts:
    """Everything the report's verdict section says about one group."""

    primary: str
    best_static: str | None = None
    comparisons: list[verdict_text.Comparison] = field(default_factory=list)
    paired_sds: list[float] = field(default_factory=list)
    n_pairs: int = 0
    intervals: dict[str, DeltaMInterval] = field(default_factory=dict)
    failed: dict[str, tuple[int, int]] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    moves: dict[str, float] = field(default_factory=dict)
    edges: dict[str, str] = field(default_factory=dict)
    chosen_lr: dict[str, float] = field(default_factory=dict)
    selection_seeds: dict[str, tuple[int, ...]] = field(default_factory=dict)
    parallel: bool = False
    hosts: tuple[str, ...] = ()

    def sentences(self) -> list[str]:
        return sentences(self)


def _by_seed(chosen: pd.DataFrame, strategy: str, col: str) -> dict[int, float]:
    mine = chosen[chosen["strategy"] == strategy]
    return {int(s): float(v) for s, v in zip(mine["seed"], mine[col], strict=True)}


def _methods(summary: pd.DataFrame) -> list[str]:
    """The adaptive methods: the strategies of family :data:`FAMILY_SUM` (every method but the
    fixed equal weightings; experiments/utkface-cpu.toml, family F1)."""
    kind = summary["kind"] == report.KIND_METHOD
    names = [str(s) for s in summary.loc[kind, "strategy"]]
    return [s for s in names if family(s) == FAMILY_SUM and not s.startswith(BEST_STATIC)]


def comparisons(
    chosen: pd.DataFrame, summary: pd.DataFrame, primary: str, best: str | None
) -> tuple[list[verdict_text.Comparison], list[float], int]:
    """Paired-by-seed t-tests of the primary metric in three families, Holm within each: every
    adaptive method against ``sum`` and against the best static point, and the interior static
    points against ``sum``. Also the SD of the paired differences against ``sum`` (for the
    power statement) and the typical number of pairs."""
    tests: list[tuple[str, str, str, float, float]] = []  # method, reference, family, diff, p
    sds, pairs = [], []
    refs = [(report.REFERENCE, FAMILY_SUM)] + ([(best, FAMILY_STATIC)] if best else [])
    for method in _methods(summary):
        a = _by_seed(chosen, method, primary)
        for ref, fam in refs:
            b = _by_seed(chosen, ref, primary)
            test = stats.paired_t_test(a, b)
            tests.append((method, ref, fam, test.mean_diff, test.p_value))
            keys = sorted(set(a) & set(b))
            if fam == FAMILY_SUM and len(keys) >= 2:
                sds.append(float(np.std([a[k] - b[k] for k in keys], ddof=1)))
                pairs.append(len(keys))
    for spec in summary["strategy"]:
        if family(str(spec)) == FAMILY_SWEEP:
            a, b = _by_seed(chosen, str(spec), primary), _by_seed(chosen, report.REFERENCE, primary)
            test = stats.paired_t_test(a, b)
            tests.append((str(spec), report.REFERENCE, FAMILY_SWEEP, test.mean_diff, test.p_value))
    adjusted = holm_by_family([(f, p) for _, _, f, _, p in tests])
    out = [
        verdict_text.Comparison(m, best_static_label(r) if r == best else r, f, d, p)
        for (m, r, f, d, _), p in zip(tests, adjusted, strict=True)
    ]
    n_pairs = int(np.median(pairs)) if pairs else 0
    return out, sds, n_pairs


def baseline_seeds(
    everything: pd.DataFrame, baselines: pd.DataFrame, tasks: TaskSet = UTKFACE_TASKS
) -> dict[str, dict[int, float]]:
    """``task -> seed -> test metric`` of the single-task runs at each baseline's chosen lr
    (``baselines``: one group's rows of :func:`tables.single_task_baselines`)."""
    out: dict[str, dict[int, float]] = {}
    by_task = {t.name: t for t in tasks}
    for _, b in baselines.iterrows():
        task = by_task[str(b["task"])]
        rows = everything[
            (everything["tasks"] == task.name)
            & (everything["status"] == "finished")
            & (everything["lr"] == b["lr"])
        ]
        for key in report.GROUP_PARAMS:
            rows = rows[rows[key] == b[key]]
        out[task.name] = {
            int(s): float(v) for s, v in zip(rows["seed"], rows[f"test/{task.metric}"], strict=True)
        }
    return out


def intervals(
    chosen: pd.DataFrame,
    strategies: list[str],
    base: dict[str, dict[int, float]],
    tasks: TaskSet = UTKFACE_TASKS,
) -> dict[str, DeltaMInterval]:
    """Delta-m of each strategy at its chosen lr with an interval that includes the baselines'
    seed variance (:func:`verdict_stats.delta_m_interval`)."""
    if {t.name for t in tasks} != set(base) or not all(base.values()):
        return {}
    higher = {t.name: t.higher_is_better for t in tasks}
    out = {}
    for strategy in strategies:
        mine = chosen[chosen["strategy"] == strategy]
        if mine.empty:
            continue
        method = {
            int(r["seed"]): {t.name: float(r[f"test/{t.metric}"]) for t in tasks}
            for _, r in mine.iterrows()
        }
        out[strategy] = delta_m_interval(method, base, higher)
    return out


def failed_at_lr(tidy: pd.DataFrame, chosen_lr: dict[str, float]) -> dict[str, tuple[int, int]]:
    """``strategy -> (seeds that diverged or failed at its chosen lr, seeds run there)``."""
    out = {}
    for strategy, lr in chosen_lr.items():
        at = tidy[(tidy["strategy"] == strategy) & (tidy["lr"] == lr)]
        out[strategy] = (int(at["status"].isin(report.FAILED_STATUSES).sum()), len(at))
    return out


def selection_seeds(tidy: pd.DataFrame, chosen_lr: dict[str, float]) -> dict[str, tuple[int, ...]]:
    """``strategy -> seeds its lrs were compared on`` for the strategies whose chosen lr ran more
    seeds than that (a two-stage study); empty when every lr ran the same seeds."""
    out = {}
    for strategy, lr in chosen_lr.items():
        mine = tidy[tidy["strategy"] == strategy]
        common = report.common_seeds(mine)
        at_lr = set(mine.loc[mine["lr"] == lr, "seed"].dropna().astype(int))
        if common and at_lr - common:
            out[strategy] = tuple(sorted(common))
    return out


def step_costs(tidy: pd.DataFrame) -> dict[str, float]:
    """Per strategy, median training throughput over its finished trials relative to ``sum``'s
    in the same study (:func:`verdict_stats.relative_step_cost`); empty without ``sum``."""
    if THROUGHPUT not in tidy:
        return {}
    done = tidy[(tidy["status"] == "finished") & tidy[THROUGHPUT].notna()]
    speed = {str(k): float(v) for k, v in done.groupby("strategy")[THROUGHPUT].median().items()}
    if not speed.get(report.REFERENCE, 0) > 0:
        return {}
    return relative_step_cost(speed, report.REFERENCE)


def weight_moves(chosen: pd.DataFrame) -> dict[str, float]:
    """Mean over seeds of the logged ``strategy/weight_move`` at the chosen lr (strategies that
    learn weights log it; the others are left out)."""
    if WEIGHT_MOVE not in chosen:
        return {}
    logged = chosen[chosen[WEIGHT_MOVE].notna()]
    return {str(k): float(v) for k, v in logged.groupby("strategy")[WEIGHT_MOVE].mean().items()}


def lr_edges(tidy: pd.DataFrame, chosen_lr: dict[str, float]) -> dict[str, str]:
    """Strategies whose chosen lr is the lowest or highest of the (two or more) lrs they ran."""
    out = {}
    for strategy, lr in chosen_lr.items():
        grid = sorted(tidy.loc[tidy["strategy"] == strategy, "lr"].dropna().unique())
        edge = at_edge(grid, lr) if len(grid) >= 2 else None
        if edge is not None:
            out[strategy] = edge
    return out


def build(
    tidy: pd.DataFrame,
    summary: pd.DataFrame,
    primary: str,
    everything: pd.DataFrame,
    baselines: pd.DataFrame,
) -> Verdicts:
    """The verdicts of one group: ``tidy`` its trials (repeats dropped, with
    :func:`extra_columns`), ``summary`` its leaderboard, ``everything`` every trial of the
    experiment (repeats dropped; baselines may come from another study) and ``baselines`` the
    group's rows of :func:`tables.single_task_baselines`."""
    v = Verdicts(primary=primary)
    if summary.empty:
        return v
    chosen = report.chosen_trials(tidy)
    lrs = report.choose_lr(tidy)
    v.chosen_lr = {str(s): float(lr) for s, lr in zip(lrs["strategy"], lrs["lr"], strict=True)}
    v.best_static = best_static(summary)
    v.comparisons, v.paired_sds, v.n_pairs = comparisons(chosen, summary, primary, v.best_static)
    if primary == "test/delta_m":
        names = [*_methods(summary), report.REFERENCE, *([v.best_static] if v.best_static else [])]
        tasks = report.tasks_of(tidy)
        base = baseline_seeds(everything, baselines, tasks)
        v.intervals = intervals(chosen, names, base, tasks)
    v.failed = failed_at_lr(tidy, v.chosen_lr)
    v.selection_seeds = selection_seeds(tidy, v.chosen_lr)
    v.cost = step_costs(tidy)
    v.moves = weight_moves(chosen)
    v.edges = lr_edges(tidy, v.chosen_lr)
    v.parallel = _overlapping(tidy)
    v.hosts = machines(tidy)
    return v


def machines(tidy: pd.DataFrame) -> tuple[str, ...]:
    """The machines the group's finished trials ran on (tag :data:`HOST_TAG`)."""
    if HOST not in tidy:
        return ()
    done = tidy.loc[tidy["status"] == "finished", HOST].dropna()
    return tuple(sorted({str(h) for h in done if str(h)}))


def _overlapping(tidy: pd.DataFrame) -> bool:
    """Whether trials ran at the same time (a process pool): their throughputs then share the
    machine, so step costs are rougher."""
    if "time/train_s" not in tidy:
        return False
    rows = tidy[tidy["start_time"].notna() & tidy["time/train_s"].notna()].sort_values("start_time")
    ends = rows["start_time"] + 1000 * rows["time/train_s"]
    return bool((rows["start_time"].to_numpy()[1:] < ends.to_numpy()[:-1]).any())


def sentences(v: Verdicts) -> list[str]:
    """The verdict sentences, each generated from the numbers above."""
    out = []
    if v.best_static is not None:
        out.append(
            f"The best static weighting with every weight > 0, chosen on validation like any "
            f"method's lr, is {v.best_static} (leaderboard row "
            f"\u201c{best_static_label(v.best_static)}\u201d)."
        )
        out.append(verdict_text.beats_sentence(v.comparisons, best_static_label(v.best_static)))
    else:
        out.append(
            "No interior static weighting was trained (`--static-sweep N`), so no adaptive method "
            "was tested against the best static weighting."
        )
    out.append(verdict_text.beats_sentence(v.comparisons, report.REFERENCE))
    sweep = [c for c in v.comparisons if c.family == FAMILY_SWEEP]
    if sweep:
        out.append(
            f"The {len(sweep)} interior static points are tested against {report.REFERENCE} in "
            f"their own family (\u201c{FAMILY_SWEEP}\u201d), apart from the methods."
        )
    if v.intervals:
        out.append(verdict_text.interval_sentence(v.intervals))
    out.append(verdict_text.power_sentence(v.paired_sds, v.n_pairs))
    out.append(verdict_text.failed_sentence(v.failed))
    if v.selection_seeds:
        out.append(verdict_text.selection_sentence(v.selection_seeds, len(v.chosen_lr)))
    for extra in (verdict_text.weights_sentence(v.moves), verdict_text.edge_sentence(v.edges)):
        if extra is not None:
            out.append(extra)
    if v.cost:
        out.append(cost_sentence(v.cost, v.parallel, v.hosts))
    return out


def cost_sentence(cost: dict[str, float], parallel: bool, hosts: Sequence[str] = ()) -> str:
    """Which methods cost most per training step relative to ``sum``; with trials from several
    machines (a study continued in another session) the ratios mix them, and the sentence says
    so."""
    ranked = sorted(((c, s) for s, c in cost.items() if s != report.REFERENCE), reverse=True)
    top = ", ".join(f"{s} {c:.2f}x" for c, s in ranked[:3])
    how = (
        "trials ran side by side in a process pool, so these ratios share the machine"
        if parallel
        else "trials ran one at a time"
    )
    text = (
        f"Step cost relative to {report.REFERENCE} (median training images/s of "
        f"{report.REFERENCE} / of the method, same study; {how}): most expensive {top}."
    )
    if len(hosts) > 1:
        text += (
            f" The trials ran on {len(hosts)} machines ({'; '.join(hosts)}), so these ratios mix "
            "machines of different speed: read them as rough."
        )
    return text


def tests_frame(v: Verdicts | None) -> pd.DataFrame:
    """Every paired test of the verdicts (``tests.csv``): method, reference, family, mean
    difference of the primary metric, Holm-adjusted p within the family."""
    cols = ["method", "reference", "family", "metric", "mean_diff", "p_holm"]
    if v is None:
        return pd.DataFrame(columns=cols)
    rows = [
        (c.method, c.reference, c.family, v.primary, c.mean_diff, c.p_holm) for c in v.comparisons
    ]
    return pd.DataFrame(rows, columns=cols)


def _signed(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:+.2f}"


def _p(p: float) -> str:
    return "–" if not math.isfinite(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def _interval(iv: DeltaMInterval | None) -> str:
    if iv is None:
        return "–"
    return _signed(iv.mean) + (f" ± {iv.half:.2f}" if math.isfinite(iv.half) else "")


def table(v: Verdicts) -> tuple[list[str], list[list[str]]]:
    """One row per adaptive method (and the references): chosen lr (edge marked), failed seeds
    at it, delta-m with the baselines' seed variance, the two tests, step cost, weight move."""
    refs = {(c.method, c.family): c for c in v.comparisons}
    names = dict.fromkeys(
        [report.REFERENCE, *([v.best_static] if v.best_static else [])]
        + [c.method for c in v.comparisons if c.family == FAMILY_SUM]
    )
    header = [
        "strategy",
        "lr",
        "failed seeds at lr",
        "Δm ± 95% (with baseline noise)",
        f"vs {report.REFERENCE}: Δ (Holm p)",
        f"vs {BEST_STATIC}: Δ (Holm p)",
        f"step cost (× {report.REFERENCE})",
        "learned weights moved",
    ]
    rows = []
    for name in names:
        lr = v.chosen_lr.get(name, math.nan)
        edge = v.edges.get(name)
        k, n = v.failed.get(name, (0, 0))
        iv = v.intervals.get(name)
        cells = [
            f"{c.mean_diff:+.2f} ({_p(c.p_holm)})" if (c := refs.get((name, f))) else "–"
            for f in (FAMILY_SUM, FAMILY_STATIC)
        ]
        move = v.moves.get(name, math.nan)
        rows.append(
            [
                best_static_label(name) if name == v.best_static else name,
                "–" if not math.isfinite(lr) else f"{lr:g}" + (f" ({edge} edge)" if edge else ""),
                f"{k}/{n}",
                _interval(iv),
                *cells,
                f"{v.cost[name]:.2f}" if name in v.cost else "–",
                "–" if not math.isfinite(move) else f"{100 * move:.0f}%",
            ]
        )
    return header, rows
