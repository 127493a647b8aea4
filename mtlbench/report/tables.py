"""Aggregate trials (as stored in MLflow) into the per-strategy comparison.

Input is the frame from :func:`mtlbench.tracking.load_trials`; nothing here trains, plots or
talks to MLflow. The learning rate of each strategy is chosen on validation (fewest diverged or
failed seeds, then mean ``best_val/score`` of the finished seeds, lower is better); the reported
numbers are the test metrics of that learning rate, as mean and 95% t-interval over seeds, with
a paired-by-seed t-test against ``sum``. Trials are compared only within one *group* (same data,
split, image size, backbone and epochs): :func:`split_groups` keeps groups apart so they are
never averaged together.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mtlbench.mtl.tasks import UTKFACE_TASKS, TaskSet
from mtlbench.report import stats, verdict_stats
from mtlbench.tracking import REFERENCE_PREFIX, SOLVER_FALLBACK_TAG, TASKS_TAG

SELECTION_METRIC = "best_val/score"
REFERENCE = "sum"
TASK_SPEC = "task_spec"  # tidy column: the trial's declared tasks as JSON ("" = UTKFace's)


def test_metrics(tasks: TaskSet = UTKFACE_TASKS) -> tuple[str, ...]:
    return tuple(f"test/{t.metric}" for t in tasks)


def val_metrics(tasks: TaskSet = UTKFACE_TASKS) -> tuple[str, ...]:
    return tuple(f"best_val/{t.metric}" for t in tasks)


def reference_metrics(tasks: TaskSet = UTKFACE_TASKS) -> tuple[str, ...]:
    """Each task's constant predictor on test (logged per trial; the same in a group)."""
    return tuple(REFERENCE_PREFIX + t.metric for t in tasks)


def reported(tasks: TaskSet = UTKFACE_TASKS) -> tuple[str, ...]:
    """Every number the leaderboard reports per strategy (mean, std, CI over seeds)."""
    return (*test_metrics(tasks), "test/score", "test/delta_m")


# UTKFace's, for callers that predate dataset plug-ins.
TEST_METRICS: tuple[str, ...] = test_metrics()
VAL_METRICS: tuple[str, ...] = val_metrics()
REPORTED: tuple[str, ...] = reported()


def tasks_of(frame: pd.DataFrame) -> TaskSet:
    """The tasks of a group of trials (from their ``mtlbench.tasks`` tag; UTKFace's for runs
    made before dataset plug-ins). A group shares its data, hence its tasks."""
    if TASK_SPEC in frame:
        for text in frame[TASK_SPEC].dropna():
            if str(text):
                return TaskSet.from_json(str(text))
    return UTKFACE_TASKS


def _task_sets(trials: pd.DataFrame) -> list[TaskSet]:
    column = f"tag.{TASKS_TAG}"
    specs = set(trials[column].dropna().astype(str)) - {""} if column in trials else set()
    return [UTKFACE_TASKS, *(TaskSet.from_json(s) for s in sorted(specs))]


# Trials compare (and single-task baselines apply) only within one such group.
GROUP_PARAMS: tuple[str, ...] = ("data_sha256", "split_sha256", "image_size", "backbone", "epochs")
# Stated in the report's header: the budget behind the numbers.
BUDGET_PARAMS: tuple[str, ...] = (
    "data",
    "max_samples",
    "n_train",
    "n_val",
    "n_test",
    "weights",
    "batch_size",
    "optimizer",
)
STATUSES: tuple[str, ...] = ("finished", "diverged", "failed", "pruned")

KIND_METHOD, KIND_SWEEP, KIND_SINGLE = "method", "fixed weights", "single-task"


def _float(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(np.nan, index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce")


def _text(frame: pd.DataFrame, column: str, default: str = "") -> pd.Series:
    if column not in frame:
        return pd.Series(default, index=frame.index, dtype=object)
    return frame[column].fillna(default).astype(str)


def strategy_kind(strategy: str) -> str:
    """``single-task`` for ``stl:<task>``, ``fixed weights`` for ``static:<w>`` (the
    scalarisation sweep), ``method`` for everything the leaderboard ranks."""
    if strategy.startswith("stl"):
        return KIND_SINGLE
    if strategy.startswith("static"):
        return KIND_SWEEP
    return KIND_METHOD


def tidy_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """Typed columns: strategy, lr, seed, status, group and budget params, trained tasks,
    start time and final metrics; sorted by strategy, lr, seed."""
    per_task: list[str] = []
    for tasks in _task_sets(trials):
        for col in (*val_metrics(tasks), *test_metrics(tasks), *reference_metrics(tasks)):
            if col not in per_task:
                per_task.append(col)
    metrics = (SELECTION_METRIC, "best_epoch", *per_task, "test/score")
    cols = [
        "run_id",
        "parent_run_id",
        "strategy",
        "lr",
        "seed",
        "status",
        "tasks",
        TASK_SPEC,
        "start_time",
        "solver_fallback",
        *GROUP_PARAMS,
        *BUDGET_PARAMS,
        *metrics,
        "test/delta_m",
    ]
    if trials.empty:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(
        {
            "run_id": trials["run_id"],
            "parent_run_id": _text(trials, "parent_run_id"),
            "strategy": _text(trials, "param.strategy"),
            "lr": _float(trials, "param.lr"),
            "seed": _float(trials, "param.seed").astype("Int64"),
            "status": _text(trials, "status", "unknown"),
            "tasks": _text(trials, "param.tasks", ",".join(UTKFACE_TASKS.names)),
            TASK_SPEC: _text(trials, f"tag.{TASKS_TAG}"),
            "start_time": _float(trials, "start_time"),
            # share of fallback steps, set only on trials above FALLBACK_LIMIT
            "solver_fallback": _float(trials, f"tag.{SOLVER_FALLBACK_TAG}"),
        }
    )
    for key in (*GROUP_PARAMS, *BUDGET_PARAMS):
        out[key] = _text(trials, f"param.{key}")
    for col in (*metrics, "test/delta_m"):
        out[col] = _float(trials, col)
    return out[cols].sort_values(["strategy", "lr", "seed"]).reset_index(drop=True)


def drop_repeats(tidy: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Keep one trial per (group, strategy, lr, seed): the newest finished one, else the newest.

    A re-run of a crashed invocation must not count a seed twice. Returns the kept trials and
    how many were dropped.
    """
    if tidy.empty:
        return tidy, 0
    keys = [*GROUP_PARAMS, "strategy", "lr", "seed"]
    order = tidy.assign(_done=(tidy["status"] == "finished").astype(int))
    order = order.sort_values(["_done", "start_time"], na_position="first")
    kept = order.drop_duplicates(keys, keep="last").drop(columns="_done")
    kept = kept.sort_values(["strategy", "lr", "seed"]).reset_index(drop=True)
    return kept, len(tidy) - len(kept)


def split_groups(tidy: pd.DataFrame) -> list[pd.DataFrame]:
    """One frame per group of comparable trials, the largest first (ties: by group key)."""
    if tidy.empty:
        return []
    groups = [g.reset_index(drop=True) for _, g in tidy.groupby(list(GROUP_PARAMS), sort=True)]
    return sorted(groups, key=len, reverse=True)


def group_label(group: pd.DataFrame) -> str:
    """Short human description of a group: what distinguishes it from the others."""
    row = group.iloc[0]
    return (
        f"{row['backbone']}, {row['image_size']} px, {row['epochs']} epochs, "
        f"data {str(row['data_sha256'])[:8]}, split {str(row['split_sha256'])[:8]}"
    )


def single_task_baselines(tidy: pd.DataFrame) -> pd.DataFrame:
    """B_t for delta-m: per group and task, the finished trials that trained only that task.

    Their learning rate is chosen on the task's own validation metric (mean over seeds);
    ``baseline`` is the mean test metric over seeds at that learning rate.
    """
    cols = [*GROUP_PARAMS, "task", "lr", "baseline", "n_seeds"]
    rows = []
    runs = tidy[~tidy["tasks"].str.contains(",", na=True)]
    single = runs[runs["status"] == "finished"]
    for key, in_group in single.groupby(list(GROUP_PARAMS)):
        for task in tasks_of(in_group):
            group = in_group[in_group["tasks"] == task.name]
            if group.empty:
                continue
            val_col, test_col = f"best_val/{task.metric}", f"test/{task.metric}"
            by_lr = group.groupby("lr")[[val_col, test_col]].mean()
            best = by_lr[val_col].idxmax() if task.higher_is_better else by_lr[val_col].idxmin()
            mine_all = runs[(runs["tasks"] == task.name)]
            for k, v in zip(GROUP_PARAMS, key, strict=True):
                mine_all = mine_all[mine_all[k] == v]
            sign = -1.0 if task.higher_is_better else 1.0
            candidates = lr_candidates(mine_all, sign * mine_all[val_col])
            best = verdict_stats.choose_lr(candidates) if candidates else best
            n = int((group["lr"] == best).sum())
            rows.append([*key, task.name, best, by_lr.loc[best, test_col], n])
    return pd.DataFrame(rows, columns=cols)


def delta_m(
    metrics: dict[str, float], baselines: dict[str, float], tasks: TaskSet = UTKFACE_TASKS
) -> float:
    """``100/T * sum_t (-1)^{higher_is_better_t} (M_t - B_t) / B_t``; lower is better.

    ``metrics`` and ``baselines`` are keyed by task name.
    """
    total = 0.0
    for task in tasks:
        sign = -1.0 if task.higher_is_better else 1.0
        total += sign * (metrics[task.name] - baselines[task.name]) / baselines[task.name]
    return 100.0 * total / len(tasks)


def with_delta_m(tidy: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Add ``test/delta_m`` to every finished multi-task trial whose group has all baselines.

    Multi-task means two or more trained tasks: a fixed-weight point such as ``static:0,1,2``
    still has all three heads evaluated (the untrained one at its initial prediction) and sits
    on the same delta-m scale; single-task baselines themselves get none.
    """
    out = tidy.copy()
    if baselines.empty:
        return out
    for key, group in baselines.groupby(list(GROUP_PARAMS)):
        mask = (out["status"] == "finished") & out["tasks"].str.contains(",", na=False)
        for k, v in zip(GROUP_PARAMS, key, strict=True):
            mask &= out[k] == v
        tasks = tasks_of(out[mask])
        if set(group["task"]) != set(tasks.names):
            continue
        base = dict(zip(group["task"], group["baseline"], strict=True))
        for idx in out.index[mask]:
            metrics = {t.name: out.at[idx, f"test/{t.metric}"] for t in tasks}
            out.at[idx, "test/delta_m"] = delta_m(metrics, base, tasks)
    return out


FAILED_STATUSES: tuple[str, ...] = ("diverged", "failed")


def common_seeds(rows: pd.DataFrame) -> set[int]:
    """The seeds that every lr of ``rows`` (one strategy) with a finished seed has; an lr all of
    whose seeds failed does not narrow the set (its failures still count against it).

    A two-stage study (the lr chosen on seed 0, more seeds only at the chosen lr;
    experiments/utkface-cpu.toml) must keep choosing on seed 0: comparing the chosen lr's
    3-seed mean with another lr's single seed would let the report pick a different lr than the
    study did, on a biased comparison. In a full factorial every seed is common."""
    per_lr = [
        set(at_lr["seed"].dropna().astype(int))
        for _, at_lr in rows.groupby("lr")
        if (at_lr["status"] == "finished").any()
    ]
    return set.intersection(*per_lr) if per_lr else set()


def lr_candidates(rows: pd.DataFrame, score: pd.Series) -> dict[float, tuple[int, float]]:
    """``lr -> (seeds that diverged or failed, mean score of the finished seeds)`` over the lrs
    with at least one finished seed (an lr none of whose seeds finished has nothing to report;
    it still cannot win: see :data:`verdict_stats.LR_RULE`). Only the seeds every lr has count
    (:func:`common_seeds`)."""
    if "seed" in rows.columns and (common := common_seeds(rows)):
        rows = rows[rows["seed"].isin(common)]
    out: dict[float, tuple[int, float]] = {}
    for lr, at_lr in rows.groupby("lr"):
        done = score[at_lr.index][at_lr["status"] == "finished"].dropna()
        if len(done):
            n_failed = int(at_lr["status"].isin(FAILED_STATUSES).sum())
            out[float(lr)] = (n_failed, float(done.mean()))
    return out


def choose_lr(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per strategy: the learning rate chosen under :data:`verdict_stats.LR_RULE` (fewest
    diverged or failed seeds, then the lowest mean validation score of the finished seeds).

    For a single-task run the score covers its one task, so this is the same choice as
    :func:`single_task_baselines` makes on the task's own metric.
    """
    rows = []
    for strategy, group in tidy.groupby("strategy", sort=True):
        candidates = lr_candidates(group, group[SELECTION_METRIC])
        if candidates:
            rows.append((strategy, verdict_stats.choose_lr(candidates)))
    return pd.DataFrame(rows, columns=["strategy", "lr"])


def primary_metric(tidy: pd.DataFrame) -> str:
    """What ranks strategies: delta-m when the single-task baselines exist, else the
    normalised test score (both lower-is-better)."""
    multi = tidy[(tidy["status"] == "finished") & tidy["tasks"].str.contains(",", na=False)]
    if not multi.empty and multi["test/delta_m"].notna().any():
        return "test/delta_m"
    return "test/score"


def chosen_trials(tidy: pd.DataFrame) -> pd.DataFrame:
    """The finished trials of each strategy at its chosen learning rate."""
    chosen = choose_lr(tidy)
    keep = tidy.merge(chosen, on=["strategy", "lr"])
    return keep[keep["status"] == "finished"].reset_index(drop=True)


def _untrained_metrics(strategy_rows: pd.DataFrame, declared: TaskSet) -> set[str]:
    """Test metrics of heads a single-task run did not train (meaningless, left blank)."""
    tasks = set(",".join(strategy_rows["tasks"].dropna()).split(","))
    if len(tasks) != 1:
        return set()
    return {f"test/{t.metric}" for t in declared if t.name not in tasks}


def summarize(tidy: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """One row per strategy at its chosen lr: every reported metric's mean, std and 95%
    t-interval over seeds, the status counts, the rank among methods and a paired-by-seed
    t-test of the primary metric against ``reference``."""
    primary = primary_metric(tidy)
    declared = tasks_of(tidy)
    chosen = chosen_trials(tidy)
    ref = chosen[chosen["strategy"] == reference]
    ref_by_seed = dict(zip(ref["seed"].astype(int), ref[primary], strict=True))
    rows = []
    for strategy, group in tidy.groupby("strategy", sort=True):
        counts = group["status"].value_counts()
        row: dict[str, object] = {
            "strategy": strategy,
            "kind": strategy_kind(str(strategy)),
            "lr_grid": ",".join(f"{lr:g}" for lr in sorted(group["lr"].dropna().unique())),
            "n_trials": len(group),
            **{f"n_{s}": int(counts.get(s, 0)) for s in STATUSES},
        }
        row["n_other"] = len(group) - sum(int(counts.get(s, 0)) for s in STATUSES)
        sel = chosen[chosen["strategy"] == strategy]
        row["best_lr"] = float(sel["lr"].iloc[0]) if len(sel) else math.nan
        row["n_seeds"] = len(sel)
        row["n_run_at_lr"] = int((group["lr"] == row["best_lr"]).sum())
        row["seeds"] = ",".join(str(int(s)) for s in sorted(sel["seed"].dropna()))
        row["val_score"] = sel[SELECTION_METRIC].mean() if len(sel) else math.nan
        fallback = _float(sel, "solver_fallback").dropna()
        row["n_fallback"] = len(fallback)
        row["max_fallback"] = float(fallback.max()) if len(fallback) else math.nan
        blank = _untrained_metrics(group, declared)
        for col in reported(declared):
            ci = stats.t_interval(sel[col].to_numpy(dtype=float) if col not in blank else [])
            row[col], row[f"{col}_std"], row[f"{col}_ci"] = ci.mean, ci.std, ci.half
        test = stats.paired_t_test(
            dict(zip(sel["seed"].astype(int), sel[primary], strict=True)), ref_by_seed
        )
        is_ref = strategy == reference
        row["n_pairs"] = 0 if is_ref else test.n_pairs
        row["diff_vs_ref"] = math.nan if is_ref else test.mean_diff
        row["p_vs_ref"] = math.nan if is_ref else test.p_value
        rows.append(row)
    summary = pd.DataFrame(rows)
    if summary.empty:
        summary.attrs[TASK_SPEC] = declared.to_json()
        return summary
    # Adaptive methods and fixed-weight points are separate test families (issue 11): a sweep
    # point that leaves a head untrained must not change the methods' adjusted p-values.
    summary["family"] = summary["strategy"].map(verdict_stats.family)
    summary["p_vs_ref_holm"] = verdict_stats.holm_by_family(
        list(zip(summary["family"], summary["p_vs_ref"].astype(float), strict=True))
    )
    methods = (summary["kind"] == KIND_METHOD) & summary[primary].notna()
    summary["rank"] = summary[primary].where(methods).rank(method="min")
    kind_order = summary["kind"].map({KIND_METHOD: 0, KIND_SWEEP: 1, KIND_SINGLE: 2})
    summary = summary.assign(_k=kind_order).sort_values(
        ["_k", "rank", primary, "val_score"], na_position="last"
    )
    summary = summary.drop(columns="_k").reset_index(drop=True)
    summary.attrs[TASK_SPEC] = declared.to_json()  # which columns are task metrics
    return summary
