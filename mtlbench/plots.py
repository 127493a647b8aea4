"""Seaborn figures built from what tracking stored (never from live training objects)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtlbench.tasks import TASKS

_METRIC_LABELS = {
    "val/age_mae": "val age MAE (years)",
    "val/gender_acc": "val gender accuracy",
    "val/race_acc": "val race accuracy",
}


def strategy_palette(strategies: list[str]) -> dict[str, tuple[float, float, float]]:
    """The same colour for a strategy in every figure (sorted-name order)."""
    import seaborn as sns

    names = sorted(set(strategies))
    colours = sns.color_palette("tab10" if len(names) <= 10 else "husl", len(names))
    return dict(zip(names, colours, strict=True))


def curves_figure(histories: pd.DataFrame, tidy: pd.DataFrame, path: Path) -> Path:
    """Validation curves per task (top) and applied task weights (bottom), one line per
    strategy at its chosen learning rate, mean over seeds with a 95% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from mtlbench.report import choose_lr

    chosen = choose_lr(tidy)
    keep = tidy.merge(chosen, on=["strategy", "lr"])
    keep = keep[keep["status"] == "finished"]
    data = histories.merge(keep[["run_id", "strategy", "seed"]], on="run_id")
    palette = strategy_palette(list(tidy["strategy"].dropna()))
    top = list(_METRIC_LABELS)
    bottom = [f"weight/{t.name}" for t in TASKS]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    for ax, key in zip([*axes[0], *axes[1]], [*top, *bottom], strict=True):
        sub = data[data["key"] == key]
        if not sub.empty:
            sns.lineplot(
                data=sub,
                x="step",
                y="value",
                hue="strategy",
                palette=palette,
                marker="o",
                errorbar=("ci", 95),
                ax=ax,
                legend=ax is axes[0][0],
            )
        ax.set_xlabel("epoch")
        ax.set_ylabel(_METRIC_LABELS.get(key, key))
        ax.set_title(_METRIC_LABELS.get(key, f"applied weight: {key.split('/')[1]}"))
    fig.suptitle(
        "Validation curves and task weights (best lr per strategy; band: 95% CI over seeds)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
