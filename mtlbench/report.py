"""Aggregate trials (as stored in MLflow) into the per-strategy comparison.

Input is the frame from :func:`mtlbench.tracking.load_trials`; nothing here trains or talks to
MLflow. The learning rate of each strategy is chosen on validation (mean ``best_val/score``
over seeds, lower is better); the reported numbers are the test metrics of that learning rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mtlbench.tasks import TASKS

TEST_METRICS: tuple[str, ...] = tuple(f"test/{t.metric}" for t in TASKS)
SELECTION_METRIC = "best_val/score"


def _float(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce")


# Trials compare (and single-task baselines apply) only within one such group.
GROUP_PARAMS: tuple[str, ...] = ("data_sha256", "split_sha256", "image_size", "backbone", "epochs")
VAL_METRICS: tuple[str, ...] = tuple(f"best_val/{t.metric}" for t in TASKS)


def tidy_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Typed columns: strategy, lr, seed, status, group params, trained tasks, final metrics."""
    base_cols = [
        "run_id",
        "parent_run_id",
        "strategy",
        "lr",
        "seed",
        "status",
        "tasks",
        *GROUP_PARAMS,
    ]
    if trials.empty:
        return pd.DataFrame(columns=base_cols)
    out = pd.DataFrame(
        {
            "run_id": trials["run_id"],
            "parent_run_id": trials.get("parent_run_id"),
            "strategy": trials.get("param.strategy"),
            "lr": _float(trials, "param.lr"),
            "seed": _float(trials, "param.seed").astype("Int64"),
            "status": trials["status"],
            "tasks": trials.get("param.tasks", pd.Series(ALL_TASKS, index=trials.index)),
        }
    )
    for key in GROUP_PARAMS:
        out[key] = trials.get(f"param.{key}", pd.Series("", index=trials.index)).fillna("")
    metrics = (SELECTION_METRIC, "best_epoch", *VAL_METRICS, *TEST_METRICS, "test/score")
    for col in (*metrics, "test/delta_m"):
        out[col] = _float(trials, col)
    return out.sort_values(["strategy", "lr", "seed"]).reset_index(drop=True)


ALL_TASKS = ",".join(t.name for t in TASKS)


def single_task_baselines(tidy: pd.DataFrame) -> pd.DataFrame:
    """B_t for delta-m: per group and task, the finished trials that trained only that task.

    Their learning rate is chosen on the task's own validation metric (mean over seeds);
    ``baseline`` is the mean test metric over seeds at that learning rate.
    """
    cols = [*GROUP_PARAMS, "task", "lr", "baseline", "n_seeds"]
    rows = []
    single = tidy[(tidy["status"] == "finished") & ~tidy["tasks"].str.contains(",", na=True)]
    for task in TASKS:
        mine = single[single["tasks"] == task.name]
        val_col, test_col = f"best_val/{task.metric}", f"test/{task.metric}"
        for key, group in mine.groupby(list(GROUP_PARAMS)):
            by_lr = group.groupby("lr")[[val_col, test_col]].mean()
            best = by_lr[val_col].idxmax() if task.higher_is_better else by_lr[val_col].idxmin()
            n = int((group["lr"] == best).sum())
            rows.append([*key, task.name, best, by_lr.loc[best, test_col], n])
    return pd.DataFrame(rows, columns=cols)


def delta_m(metrics: dict[str, float], baselines: dict[str, float]) -> float:
    """``100/T * sum_t (-1)^{higher_is_better_t} (M_t - B_t) / B_t``; lower is better.

    ``metrics`` and ``baselines`` are keyed by task name.
    """
    total = 0.0
    for task in TASKS:
        sign = -1.0 if task.higher_is_better else 1.0
        total += sign * (metrics[task.name] - baselines[task.name]) / baselines[task.name]
    return 100.0 * total / len(TASKS)


def with_delta_m(tidy: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Add ``test/delta_m`` to every finished multi-task trial whose group has all baselines."""
    out = tidy.copy()
    if baselines.empty:
        return out
    for key, group in baselines.groupby(list(GROUP_PARAMS)):
        if set(group["task"]) != {t.name for t in TASKS}:
            continue
        base = dict(zip(group["task"], group["baseline"], strict=True))
        mask = (out["status"] == "finished") & (out["tasks"] == ALL_TASKS)
        for k, v in zip(GROUP_PARAMS, key, strict=True):
            mask &= out[k] == v
        for idx in out.index[mask]:
            metrics = {t.name: out.at[idx, f"test/{t.metric}"] for t in TASKS}
            out.at[idx, "test/delta_m"] = delta_m(metrics, base)
    return out


def choose_lr(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: the learning rate with the lowest mean validation score."""
    done = tidy[tidy["status"] == "finished"]
    if done.empty:
        return pd.DataFrame(columns=["strategy", "lr"])
    by_lr = done.groupby(["strategy", "lr"], as_index=False)[SELECTION_METRIC].mean()
    best = by_lr.loc[by_lr.groupby("strategy")[SELECTION_METRIC].idxmin()]
    return best[["strategy", "lr"]].reset_index(drop=True)


def summarize(tidy: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy at its chosen lr: mean and std over seeds of each test metric."""
    rows = []
    chosen = choose_lr(tidy)
    for strategy, group in tidy.groupby("strategy", sort=True):
        counts = group["status"].value_counts()
        row: dict[str, object] = {
            "strategy": strategy,
            "n_trials": len(group),
            "n_diverged": int(counts.get("diverged", 0)),
            "n_failed": int(counts.get("failed", 0)),
        }
        pick = chosen[chosen["strategy"] == strategy]
        if pick.empty:
            row["best_lr"] = np.nan
        else:
            lr = float(pick["lr"].iloc[0])
            sel = group[(group["lr"] == lr) & (group["status"] == "finished")]
            row["best_lr"] = lr
            row["n_seeds"] = len(sel)
            row["val_score"] = sel[SELECTION_METRIC].mean()
            for col in (*TEST_METRICS, "test/score", "test/delta_m"):
                row[col] = sel[col].mean()
                row[f"{col}_std"] = sel[col].std(ddof=1) if len(sel) > 1 else np.nan
        rows.append(row)
    summary = pd.DataFrame(rows)
    if "val_score" in summary:
        summary = summary.sort_values("val_score", na_position="last").reset_index(drop=True)
    return summary


def _mean_std(row: pd.Series, col: str, fmt: str) -> str:
    m, s = row.get(col, np.nan), row.get(f"{col}_std", np.nan)
    if pd.isna(m):
        return "–"
    return format(m, fmt) + ("" if pd.isna(s) else " ± " + format(s, fmt))


def summary_markdown(summary: pd.DataFrame) -> str:
    """A small Markdown table (mean ± std over seeds)."""
    header = (
        "| strategy | best lr | seeds | test age MAE (years) | test gender acc | test race acc |"
    )
    lines = [header, "|---|---|---|---|---|---|"]
    for _, r in summary.iterrows():
        lr = "–" if pd.isna(r.get("best_lr")) else f"{r['best_lr']:g}"
        seeds = r.get("n_seeds", 0)
        lines.append(
            f"| {r['strategy']} | {lr} | {0 if pd.isna(seeds) else int(seeds)} | "
            f"{_mean_std(r, 'test/age_mae', '.2f')} | {_mean_std(r, 'test/gender_acc', '.3f')} | "
            f"{_mean_std(r, 'test/race_acc', '.3f')} |"
        )
    return "\n".join(lines) + "\n"


def write_tables(tidy: pd.DataFrame, summary: pd.DataFrame, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "trials.csv", out_dir / "summary.csv", out_dir / "summary.md"]
    tidy.to_csv(paths[0], index=False)
    summary.to_csv(paths[1], index=False)
    paths[2].write_text(summary_markdown(summary), encoding="utf-8")
    return paths
