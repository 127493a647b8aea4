"""The compute view of a study (issue 11): validation score against wall-clock training time.

A method that is better per epoch but slower per step can be worse per second; this figure
shows both at once. Time is the cumulative ``time/epoch_s`` of each run (training and
validation of that epoch), averaged over seeds at each epoch together with ``val/score``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtlbench.report import plots
from mtlbench.report import tables as report

TIME_KEYS: tuple[str, ...] = ("val/score", "time/epoch_s")


def score_over_time(
    histories: pd.DataFrame, tidy: pd.DataFrame, extra: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Per method (and each strategy of ``extra``, e.g. the best static point) at its chosen
    lr and per epoch: mean cumulative seconds and mean validation score over seeds (columns
    strategy, step, seconds, score, n)."""
    cols = ["strategy", "step", "seconds", "score", "n"]
    chosen = report.chosen_trials(tidy)
    method = chosen["strategy"].map(report.strategy_kind) == report.KIND_METHOD
    chosen = chosen[method | chosen["strategy"].isin(extra)]
    wide = histories[histories["run_id"].isin(set(chosen["run_id"]))].pivot_table(
        index=["run_id", "step"], columns="key", values="value"
    )
    if wide.empty or not set(TIME_KEYS) <= set(wide.columns):
        return pd.DataFrame(columns=cols)
    wide = wide.reset_index().sort_values(["run_id", "step"])
    wide["seconds"] = wide.groupby("run_id")["time/epoch_s"].cumsum()
    wide = wide.merge(chosen[["run_id", "strategy"]], on="run_id")
    out = wide.groupby(["strategy", "step"], as_index=False).agg(
        seconds=("seconds", "mean"), score=("val/score", "mean"), n=("run_id", "count")
    )
    return out[cols]


def time_figure(
    histories: pd.DataFrame,
    tidy: pd.DataFrame,
    summary: pd.DataFrame,
    palette: dict[str, plots.Colour],
    path: Path,
    best_static: str | None = None,
) -> Path | None:
    """Validation score (lower is better) against cumulative wall-clock seconds, one line per
    method at its chosen lr (the best static point dashed grey); None when no run logged both
    histories."""
    data = score_over_time(histories, tidy, (best_static,) if best_static else ())
    if data.empty:
        return None
    plt = plots._pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for strategy in [s for s in summary["strategy"] if s in set(data["strategy"])]:
        mine = data[data["strategy"] == strategy]
        static = strategy == best_static
        label = f"best static ({strategy.removeprefix('static:')})" if static else strategy
        colour = palette.get(strategy, plots.SWEEP_COLOUR)
        ax.plot(mine["seconds"], mine["score"], marker="o", ms=3.5, lw=1.6,
                ls="--" if static else "-", color=colour, label=label)  # fmt: skip
    ax.set_xlabel("training wall-clock time (s, cumulative, mean over seeds)")
    ax.set_ylabel("validation score ↓")
    return plots._finish(fig, [ax], "Validation score against wall-clock time", path)
