"""Figures built from what tracking stored (never from live training objects).

Every figure takes the same ``palette`` (:func:`strategy_palette`), so a strategy has one
colour everywhere; fixed-weight sweep points are grey and single-task models black. Bands and
error bars are the same 95% t-intervals over seeds as in the tables (not seaborn's bootstrap,
which is meaningless with three seeds).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mtlbench.mtl.tasks import UTKFACE_TASKS, TaskSet
from mtlbench.report import stats
from mtlbench.report import tables as report
from mtlbench.report.text import is_percent, metric_label

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Colour = tuple[float, float, float]
SWEEP_COLOUR: Colour = (0.6, 0.6, 0.6)
SINGLE_COLOUR: Colour = (0.1, 0.1, 0.1)
CONSTANT_COLOUR: Colour = (0.45, 0.45, 0.45)
_SUMMARY_LABELS = {"delta_m": "Δm (%) ↓", "score": "normalised score ↓"}


def _label(col: str, tasks: TaskSet = UTKFACE_TASKS) -> str:
    """Axis label: "age MAE (years) ↓", "gender accuracy (%) ↑", from the task's declaration."""
    name = col.split("/")[-1]
    if name in _SUMMARY_LABELS:
        return _SUMMARY_LABELS[name]
    label = metric_label(f"test/{name}", tasks)
    return label.replace(" acc (", " accuracy (")


def _scale(col: str, tasks: TaskSet = UTKFACE_TASKS) -> float:
    task = tasks.by_metric(col)
    return 100.0 if task is not None and is_percent(task) else 1.0


def _constant_line(ax: Axes, tidy: pd.DataFrame, col: str, tasks: TaskSet) -> None:
    """The constant predictor's test value of ``col``'s task (dotted): what a model that
    ignores its input reaches; every model should be on the better side of it."""
    task = tasks.by_metric(col)
    ref = f"{report.REFERENCE_PREFIX}{task.metric}" if task is not None else ""
    if ref in tidy:
        values = pd.to_numeric(tidy[ref], errors="coerce").dropna()
        if len(values):
            value = float(values.mean()) * _scale(col, tasks)
            ax.axhline(value, color=CONSTANT_COLOUR, ls=":", lw=1.2, label="constant predictor")


def strategy_palette(strategies: Sequence[str]) -> dict[str, Colour]:
    """One colour per strategy for every figure: ``sum`` first, then the other methods in
    name order on tab10 without its grey (husl beyond 9); fixed-weight points grey;
    single-task models black."""
    import seaborn as sns

    names = set(strategies)
    methods = sorted(s for s in names if report.strategy_kind(s) == report.KIND_METHOD)
    if report.REFERENCE in methods:
        methods = [report.REFERENCE, *(m for m in methods if m != report.REFERENCE)]
    # tab10's grey (index 7) is reserved for the sweep points.
    tab9 = [c for i, c in enumerate(sns.color_palette("tab10", 10)) if i != 7]
    colours = tab9[: len(methods)] if len(methods) <= 9 else sns.color_palette("husl", len(methods))
    palette: dict[str, Colour] = {m: tuple(c) for m, c in zip(methods, colours, strict=True)}
    for s in names - set(methods):
        kind = report.strategy_kind(s)
        palette[s] = SWEEP_COLOUR if kind == report.KIND_SWEEP else SINGLE_COLOUR
    return palette


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    return plt


def _save(fig: Figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _method_order(summary: pd.DataFrame) -> list[str]:
    """Methods in leaderboard order (the summary is sorted by rank)."""
    return [s for s in summary["strategy"] if report.strategy_kind(s) == report.KIND_METHOD]


def _band(values: pd.DataFrame, by: str, y: str) -> pd.DataFrame:
    """Mean and 95% t half-width of ``y`` per value of ``by``."""
    rows = []
    for x, g in values.groupby(by, sort=True):
        ci = stats.t_interval(g[y].to_numpy(dtype=float))
        rows.append({by: x, "mean": ci.mean, "half": ci.half, "n": ci.n})
    return pd.DataFrame(rows, columns=[by, "mean", "half", "n"])


def _line_with_band(
    ax: Axes, band: pd.DataFrame, x: str, colour: Colour, label: str, scale: float, **kw: Any
) -> None:
    mean = band["mean"].to_numpy(dtype=float) * scale
    half = np.nan_to_num(band["half"].to_numpy(dtype=float) * scale)
    ax.plot(band[x], mean, color=colour, label=label, marker="o", ms=3.5, lw=1.6, **kw)
    ax.fill_between(band[x], mean - half, mean + half, color=colour, alpha=0.15, lw=0)


def _legend(fig: Figure, axes: Sequence[Axes]) -> None:
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


def _finish(fig: Figure, axes: Sequence[Axes], title: str, path: Path) -> Path:
    """One legend for all panels, the figure title, layout, and the PNG."""
    _legend(fig, axes)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _epoch_axis(ax: Axes, title: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    # The default locator is an AutoLocator, a MaxNLocator: it takes ``integer``.
    ax.xaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]


def _histories_at_chosen_lr(histories: pd.DataFrame, tidy: pd.DataFrame) -> pd.DataFrame:
    keep = report.chosen_trials(tidy)[["run_id", "strategy", "seed", "tasks"]]
    return histories.merge(keep, on="run_id")


def curves_figure(
    histories: pd.DataFrame,
    tidy: pd.DataFrame,
    summary: pd.DataFrame,
    palette: dict[str, Colour],
    path: Path,
) -> Path:
    """Validation metric per task over epochs: one line per method at its chosen lr (mean over
    seeds, 95% band), and the single-task model of that task dashed in black."""
    plt = _pyplot()
    tasks = report.tasks_of(tidy)
    data = _histories_at_chosen_lr(histories, tidy)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 3.8), squeeze=False)
    axes = axes[0]
    for ax, task in zip(axes, tasks, strict=True):
        key = f"val/{task.metric}"
        scale = _scale(key, tasks)
        sub = data[data["key"] == key]
        for strategy in _method_order(summary):
            mine = sub[sub["strategy"] == strategy]
            if not mine.empty:
                band = _band(mine, "step", "value")
                _line_with_band(ax, band, "step", palette[strategy], strategy, scale)
        single = sub[sub["tasks"] == task.name]
        if not single.empty:
            band = _band(single, "step", "value")
            _line_with_band(ax, band, "step", SINGLE_COLOUR, "single-task (stl)", scale, ls="--")
        _epoch_axis(ax, f"validation {task.name}", _label(key, tasks))
    return _finish(
        fig, axes, "Validation curves at each strategy's chosen lr (band: 95% CI over seeds)", path
    )


def weights_figure(
    histories: pd.DataFrame,
    tidy: pd.DataFrame,
    summary: pd.DataFrame,
    palette: dict[str, Colour],
    path: Path,
) -> Path:
    """The task weight each method actually applied (epoch mean), one panel per task."""
    plt = _pyplot()
    tasks = report.tasks_of(tidy)
    data = _histories_at_chosen_lr(histories, tidy)
    fig, axes = plt.subplots(
        1, len(tasks), figsize=(4.6 * len(tasks), 3.8), sharey=True, squeeze=False
    )
    axes = axes[0]
    for ax, task in zip(axes, tasks, strict=True):
        sub = data[data["key"] == f"weight/{task.name}"]
        for strategy in _method_order(summary):
            mine = sub[sub["strategy"] == strategy]
            if not mine.empty:
                _line_with_band(
                    ax, _band(mine, "step", "value"), "step", palette[strategy], strategy, 1.0
                )
        _epoch_axis(ax, f"weight on {task.name}", "applied weight (epoch mean)")
    return _finish(
        fig,
        axes,
        "Task weights over training at each method's chosen lr (band: 95% CI over seeds)",
        path,
    )


def lr_figure(
    tidy: pd.DataFrame,
    summary: pd.DataFrame,
    primary: str,
    palette: dict[str, Colour],
    path: Path,
) -> Path:
    """Each test metric against the learning rate, per method (mean and 95% CI over seeds);
    the chosen lr (on validation) is ringed."""
    plt = _pyplot()
    done = tidy[tidy["status"] == "finished"]
    tasks = report.tasks_of(tidy)
    cols = [*report.test_metrics(tasks), primary]
    chosen = dict(zip(summary["strategy"], summary["best_lr"], strict=True))
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 3.8))
    for ax, col in zip(axes, cols, strict=True):
        scale = _scale(col, tasks)
        for strategy in _method_order(summary):
            band = _band(done[done["strategy"] == strategy], "lr", col)
            band = band[band["n"] > 0]
            if band.empty:
                continue
            colour = palette[strategy]
            ax.errorbar(
                band["lr"],
                band["mean"] * scale,
                yerr=np.nan_to_num(band["half"] * scale),
                color=colour,
                marker="o",
                ms=4,
                capsize=3,
                lw=1.4,
                label=strategy,
            )
            pick = band[band["lr"] == chosen.get(strategy)]
            ax.scatter(
                pick["lr"],
                pick["mean"] * scale,
                s=110,
                facecolors="none",
                edgecolors=colour,
                lw=1.5,
            )
        _constant_line(ax, done, col, tasks)
        for task in tasks:
            if col != f"test/{task.metric}":
                continue
            single = done[done["tasks"] == task.name]
            band = _band(single, "lr", col)
            if not band.empty:
                ax.errorbar(
                    band["lr"],
                    band["mean"] * scale,
                    yerr=np.nan_to_num(band["half"] * scale),
                    color=SINGLE_COLOUR,
                    ls="--",
                    marker="s",
                    ms=4,
                    capsize=3,
                    label="single-task (stl)",
                )
        ax.set_xscale("log")
        lrs = sorted(done["lr"].dropna().unique())
        ax.set_xticks(lrs, [f"{lr:g}" for lr in lrs])
        ax.minorticks_off()
        ax.set_xlabel("learning rate")
        ax.set_ylabel(_label(col, tasks))
        ax.set_title(f"test {_label(col, tasks).rsplit(' ', 1)[0]}")
    return _finish(
        fig,
        axes,
        "Learning-rate sensitivity (test; mean, 95% CI over seeds; ring: lr chosen on validation)",
        path,
    )


def _sweep_points(tidy: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Mean test metrics of every fixed-weight point and of ``sum`` (the weights 1,1,1), each at
    the learning rate chosen for it on validation, as the leaderboard reports them."""
    chosen = report.chosen_trials(tidy)
    metrics = list(report.test_metrics(report.tasks_of(tidy)))
    sweep = [s for s in summary["strategy"] if report.strategy_kind(s) == report.KIND_SWEEP]
    if not sweep:
        return pd.DataFrame(columns=["label", *metrics])
    ones = ",".join("1" for _ in metrics)
    rows = []
    for strategy in [*sweep, report.REFERENCE]:
        sel = chosen[chosen["strategy"] == strategy]
        if sel.empty:
            continue
        label = (
            f"{ones} (sum)" if strategy == report.REFERENCE else strategy.removeprefix("static:")
        )
        rows.append({"label": label, **sel[metrics].mean()})
    return pd.DataFrame(rows, columns=["label", *metrics])


def _pairs(tasks: TaskSet) -> list[tuple[str, str]]:
    """Every pair of test metrics, in task order (3 panels for T = 3, 6 for T = 4)."""
    return list(itertools.combinations(report.test_metrics(tasks), 2))


def _higher(col: str, tasks: TaskSet = UTKFACE_TASKS) -> bool:
    task = tasks.by_metric(col)
    if task is None:
        raise ValueError(f"{col!r} is not a metric of the tasks {', '.join(tasks.names)}")
    return task.higher_is_better


def _limits(values: list[float]) -> tuple[float, float] | None:
    """Axis range around ``values`` with 12% padding (None without finite values)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    low, high = min(finite), max(finite)
    pad = 0.12 * (high - low) if high > low else max(abs(high) * 0.05, 0.5)
    return low - pad, high + pad


def _sweep_layer(
    ax: Axes,
    points: pd.DataFrame,
    x: str,
    y: str,
    box: tuple[tuple[float, float], ...],
    tasks: TaskSet,
) -> None:
    """Fixed-weight points and their front. The axes are zoomed on the methods, so a point
    that falls outside is drawn on the border as an arrow towards it, and listed with its true
    coordinates in the panel's corner."""
    sx, sy = _scale(x, tasks), _scale(y, tasks)
    (x0, x1), (y0, y1) = box
    front = stats.pareto_front(points, x, y, x_higher=_higher(x, tasks), y_higher=_higher(y, tasks))
    if len(front) > 0:
        ax.plot(
            front[x] * sx,
            front[y] * sy,
            color=SWEEP_COLOUR,
            lw=1.5,
            zorder=1,
            label="scalarisation front",
        )
    style: dict[str, Any] = {"color": SWEEP_COLOUR, "edgecolors": "white", "s": 40, "zorder": 4}
    ax.scatter([], [], marker="o", label="fixed weights (sweep)", **style)  # legend entry
    outside = []
    for _, p in points.iterrows():
        px, py = p[x] * sx, p[y] * sy
        cx, cy = min(max(px, x0), x1), min(max(py, y0), y1)
        if (cx, cy) == (px, py):
            ax.scatter([px], [py], marker="o", **style)
            ax.annotate(
                str(p["label"]),
                (px, py),
                fontsize=6.5,
                color="0.35",
                zorder=5,
                xytext=(3, 3),
                textcoords="offset points",
            )
        else:
            marker = ">" if px > x1 else "<" if px < x0 else "^" if py > y1 else "v"
            ax.scatter([cx], [cy], marker=marker, clip_on=False, **style)
            outside.append(f"{p['label']}: ({px:.3g}, {py:.3g})")
    if outside:
        ax.text(
            0.02,
            0.02,
            "outside the frame:\n" + "\n".join(outside),
            transform=ax.transAxes,
            fontsize=6.5,
            color="0.3",
            va="bottom",
            ha="left",
            zorder=6,
            bbox={"facecolor": "white", "edgecolor": "0.8", "alpha": 0.85},
        )


def pareto_figure(
    tidy: pd.DataFrame,
    summary: pd.DataFrame,
    baselines: pd.DataFrame,
    palette: dict[str, Colour],
    path: Path,
) -> Path:
    """Pairwise test-metric planes: the fixed-weight sweep (grey points, its Pareto front as a
    grey line), each method at its chosen lr with 95% CI error bars on both axes, and the
    single-task models as dashed lines. Zoomed on the methods and single-task models."""
    plt = _pyplot()
    tasks = report.tasks_of(tidy)
    pairs = _pairs(tasks)
    points = _sweep_points(tidy, summary)
    methods = summary[(summary["kind"] == report.KIND_METHOD)]
    base = dict(zip(baselines.get("task", []), baselines.get("baseline", []), strict=True))
    # At most 3 panels a row: T = 4 tasks give 6 pairs, one row of which was 3,700 px wide.
    ncols = min(PARETO_COLUMNS, len(pairs))
    nrows = -(-len(pairs) // ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 4.8 * nrows), squeeze=False)
    cells = list(grid.flat)
    for unused in cells[len(pairs) :]:
        fig.delaxes(unused)
    axes = cells[: len(pairs)]
    for ax, (x, y) in zip(axes, pairs, strict=True):
        sx, sy = _scale(x, tasks), _scale(y, tasks)
        spans: dict[str, list[float]] = {x: [], y: []}
        for _, row in methods.iterrows():
            if not (math.isfinite(row[x]) and math.isfinite(row[y])):
                continue
            xerr, yerr = np.nan_to_num(row[f"{x}_ci"] * sx), np.nan_to_num(row[f"{y}_ci"] * sy)
            ax.errorbar(
                row[x] * sx,
                row[y] * sy,
                xerr=xerr,
                yerr=yerr,
                color=palette[row["strategy"]],
                marker="o",
                ms=6,
                capsize=3,
                lw=1.2,
                zorder=3,
                label=row["strategy"],
            )
            spans[x] += [row[x] * sx - xerr, row[x] * sx + xerr]
            spans[y] += [row[y] * sy - yerr, row[y] * sy + yerr]
        for col, line in ((x, ax.axvline), (y, ax.axhline)):
            declared = tasks.by_metric(col)
            task = declared.name if declared is not None else ""
            if task in base:
                value = base[task] * _scale(col, tasks)
                line(value, color=SINGLE_COLOUR, ls="--", lw=1, label="single-task (stl)")
                spans[col].append(value)
        if not spans[x] and not points.empty:  # no method: frame the sweep instead
            spans[x] += list(points[x] * sx)
            spans[y] += list(points[y] * sy)
        xlim, ylim = _limits(spans[x]), _limits(spans[y])
        if xlim is not None and ylim is not None:
            ax.set_xlim(*xlim)
            ax.set_ylim(*ylim)
            if not points.empty:
                _sweep_layer(ax, points, x, y, (xlim, ylim), tasks)
        ax.set_xlabel(_label(x, tasks))
        ax.set_ylabel(_label(y, tasks))
        side = "right" if _higher(x, tasks) else "left"
        ax.set_title(f"{_short(x)} vs {_short(y)} (better: up, {side})")
    return _finish(
        fig,
        axes,
        "Test metrics, pairwise: methods (95% CI) against the fixed-weight front "
        "(arrows: sweep points outside the frame)",
        path,
    )


PARETO_COLUMNS = 3


def _short(col: str) -> str:
    return col.split("/")[1].replace("_", " ")


def delta_m_figure(
    tidy: pd.DataFrame,
    summary: pd.DataFrame,
    primary: str,
    palette: dict[str, Colour],
    path: Path,
) -> Path:
    """The ranking metric per strategy: mean with 95% CI, each seed as a small dot."""
    plt = _pyplot()
    rows = summary[(summary["kind"] != report.KIND_SINGLE) & summary[primary].notna()]
    chosen = report.chosen_trials(tidy)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * max(len(rows), 3) + 1.4))
    labels = []
    for i, (_, row) in enumerate(rows.iterrows()):
        strategy = row["strategy"]
        colour = palette[strategy]
        ax.errorbar(
            row[primary],
            i,
            xerr=np.nan_to_num(row[f"{primary}_ci"]),
            color=colour,
            marker="o",
            ms=7,
            capsize=4,
            lw=1.6,
        )
        seeds = chosen[chosen["strategy"] == strategy][primary].dropna()
        ax.scatter(seeds, np.full(len(seeds), i + 0.22), color=colour, s=10, alpha=0.7)
        labels.append(strategy)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    if primary == "test/delta_m":
        ax.axvline(0, color=SINGLE_COLOUR, ls="--", lw=1, label="single-task level (Δm = 0)")
    ref = rows[rows["strategy"] == report.REFERENCE]
    if not ref.empty:
        ax.axvline(
            float(ref[primary].iloc[0]),
            color=palette[report.REFERENCE],
            ls=":",
            lw=1.2,
            label=f"{report.REFERENCE} mean",
        )
    ax.set_xlabel(_label(primary) + " (lower is better)")
    ax.set_title(
        f"{_label(primary).split(' ')[0]} per strategy at its chosen lr: mean, 95% CI, seeds"
    )
    if not labels:
        ax.text(0.5, 0.5, "no finished multi-task trials", ha="center", transform=ax.transAxes)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(
            loc="upper center",
            bbox_to_anchor=(0.5, -0.14 - 0.6 / max(len(labels), 3)),
            ncols=2,
            fontsize=8,
        )
    fig.tight_layout()
    return _save(fig, path)
