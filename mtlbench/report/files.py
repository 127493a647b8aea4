"""Build the report folder from MLflow: tables, figures, ``leaderboard.md`` and ``report.html``.

This is the one path both ``mtlbench run`` (through ``search.write_outputs``) and
``mtlbench report`` take, so a report rebuilt later from the tracking server is the same as the
one a study wrote at its end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mtlbench.mtl.tasks import UTKFACE_TASKS, TaskSet
from mtlbench.report import html as html_report
from mtlbench.report import plots, plots_cost, readme, text, verdicts
from mtlbench.report import tables as report
from mtlbench.tracking import KIND_TAG, Tracker, load_histories, load_trials, log_metrics

FIGURES: dict[str, tuple[str, str]] = {
    "delta_m": (
        "Ranking metric per strategy",
        "Mean at each strategy's chosen learning rate with its 95% t-interval over seeds; the "
        "small dots are the individual seeds. Fixed-weight sweep points are grey.",
    ),
    "pareto": (
        "Pareto fronts of the test metrics",
        "Each panel plots two test metrics. Grey: fixed-weight (static) points of the "
        "scalarisation sweep, labelled by their weights (in task order), and their Pareto "
        "front; coloured: each method at its chosen lr, mean with 95% CI on both axes; dashed: "
        "the single-task models. A method on the better side of the front (see each panel's "
        "title) beats every fixed weighting tried on that pair of metrics.",
    ),
    "curves": (
        "Validation curves per task",
        "Validation metric per epoch at each strategy's chosen learning rate: mean over seeds "
        "with a 95% t-band; dashed black: the single-task model of that task.",
    ),
    "weights": (
        "Task weights over training",
        "The weight each method applied to each task loss (epoch mean), at its chosen lr; "
        "gradient methods report the weights their combined update implies. Scales follow "
        "each method's convention (sum's weights add up to T, mgda_ub's to 1; see "
        "docs/strategies.md): compare the ratios between tasks rather than the levels.",
    ),
    "time": (
        "Validation score against wall-clock time",
        "Validation score (lower is better) of each method at its chosen lr against the "
        "cumulative wall-clock time of its epochs, mean over seeds: a method that gains per "
        "epoch but costs more per step can lose per second. Times come from the same study "
        "(trials in a process pool share the machine).",
    ),
    "lr_sensitivity": (
        "Learning-rate sensitivity",
        "Test metrics at every learning rate of the grid (mean, 95% CI over seeds); the ring "
        "marks the rate chosen on validation, which is what the leaderboard reports.",
    ),
}


def history_keys(tasks: TaskSet = UTKFACE_TASKS) -> tuple[str, ...]:
    """The per-epoch metrics the figures draw: each task's validation metric and weight, and
    the time keys of the cost figure."""
    return (
        *(f"val/{t.metric}" for t in tasks),
        *(f"weight/{t.name}" for t in tasks),
        *plots_cost.TIME_KEYS,
    )


HISTORY_KEYS: tuple[str, ...] = history_keys()


@dataclass(frozen=True)
class ReportOutcome:
    summary: pd.DataFrame  # the first (largest) group's leaderboard
    files: list[Path]
    n_trials: int
    parent_run_ids: list[str]
    readme: str = ""  # summary.md: the README excerpt, links into ./ (report/readme.py)


def update_delta_m(uri: str, everything: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """Add delta-m (against ``baselines``, built from trials without repeats) to every
    multi-task trial with baselines in its group, and log it to that trial's run where it is
    new or changed (earlier studies gain it once baselines exist)."""
    before = everything["test/delta_m"].copy()
    updated = report.with_delta_m(everything, baselines)
    after = updated["test/delta_m"]
    changed = after.notna() & ~((after - before).abs() < 1e-12)
    for _, row in updated[changed].iterrows():
        log_metrics(uri, row["run_id"], {"test/delta_m": float(row["test/delta_m"])})
    return updated


def _group_baselines(baselines: pd.DataFrame, group: pd.DataFrame) -> pd.DataFrame:
    first = group.iloc[0]
    mask = pd.Series(True, index=baselines.index)
    for key in report.GROUP_PARAMS:
        mask &= baselines[key] == first[key]
    return baselines[mask].reset_index(drop=True)


def _figures(
    g: text.GroupReport,
    histories: pd.DataFrame,
    palette: dict[str, plots.Colour],
    out_dir: Path,
    suffix: str,
) -> list[text.Figure]:
    def path(name: str) -> Path:
        return out_dir / f"{name}{suffix}.png"

    made: dict[str, Path] = {
        "delta_m": plots.delta_m_figure(g.tidy, g.summary, g.primary, palette, path("delta_m")),
        "pareto": plots.pareto_figure(g.tidy, g.summary, g.baselines, palette, path("pareto")),
    }
    mine = histories[histories["run_id"].isin(set(g.tidy["run_id"]))]
    if not mine.empty:
        made["curves"] = plots.curves_figure(mine, g.tidy, g.summary, palette, path("curves"))
        made["weights"] = plots.weights_figure(mine, g.tidy, g.summary, palette, path("weights"))
    if not mine.empty:
        best = g.verdicts.best_static if g.verdicts else None
        timed = plots_cost.time_figure(mine, g.tidy, g.summary, palette, path("time"), best)
        if timed is not None:
            made["time"] = timed
    made["lr_sensitivity"] = plots.lr_figure(
        g.tidy, g.summary, g.primary, palette, path("lr_sensitivity")
    )
    return [text.Figure(p, *FIGURES[name]) for name, p in made.items()]


def _with_verdicts(summary: pd.DataFrame, v: verdicts.Verdicts) -> pd.DataFrame:
    """The leaderboard with the verdicts' columns (failed seeds at the chosen lr as k/n, step
    cost relative to sum) and the "best static" row."""
    if summary.empty:
        return summary
    out = summary.copy()
    out["failed_at_lr"] = [
        "{}/{}".format(*v.failed[s]) if s in v.failed else "–" for s in out["strategy"]
    ]
    out["step_cost"] = [v.cost.get(s, float("nan")) for s in out["strategy"]]
    nan = verdicts.DeltaMInterval(float("nan"), float("nan"), float("nan"), "baseline exact")
    ivs = [v.intervals.get(s, nan) for s in out["strategy"]]
    out["delta_m_noise"] = [iv.mean for iv in ivs]
    out["delta_m_noise_ci"] = [iv.half for iv in ivs]
    out["delta_m_noise_method"] = [
        iv.method if s in v.intervals else "" for iv, s in zip(ivs, out["strategy"], strict=True)
    ]
    return verdicts.with_best_static(out, v.best_static, v.primary)


def build_report(
    uri: str, experiment: str, parent_run_ids: Iterable[str] | None, out_dir: Path
) -> ReportOutcome:
    """Read the experiment's trials (of ``parent_run_ids`` only, if given; baselines may come
    from any study of the experiment) and write the report folder."""
    trials = load_trials(uri, experiment)
    everything = report.tidy_trials(trials)
    if not everything.empty:
        everything = everything.merge(verdicts.extra_columns(trials), on="run_id", how="left")
    if everything.empty:
        raise ValueError(f"experiment {experiment!r} has no trial runs yet; nothing to report")
    # Repeats go before the baselines are built: a repeated baseline seed must count once.
    baselines = report.single_task_baselines(report.drop_repeats(everything)[0])
    everything = update_delta_m(uri, everything, baselines)
    parents = None if parent_run_ids is None else set(parent_run_ids)
    mine = everything if parents is None else everything[everything["parent_run_id"].isin(parents)]
    if mine.empty:
        raise ValueError(f"no trials of parent run(s) {sorted(parents or [])} in {experiment!r}")
    tidy, n_repeats = report.drop_repeats(mine)
    groups = report.split_groups(tidy)
    notes = []
    if n_repeats:
        notes.append(
            f"{n_repeats} repeated trial(s) (same group, strategy, lr and seed) were left out: "
            "the newest finished run of each counts once."
        )
    if len(groups) > 1:
        notes.append(
            f"This experiment holds {len(groups)} groups of trials that differ in data, split, "
            "image size, backbone or epochs. They are not comparable and are reported "
            "separately: " + "; ".join(f"{report.group_label(g)} ({len(g)} trials)" for g in groups)
        )
    palette = plots.strategy_palette(list(tidy["strategy"]))
    wanted = pd.concat([report.chosen_trials(g) for g in groups])
    keys = dict.fromkeys(k for g in groups for k in history_keys(report.tasks_of(g)))
    histories = load_histories(uri, list(wanted["run_id"]), tuple(keys))
    out_dir.mkdir(parents=True, exist_ok=True)
    reports, files, frames = [], [], []
    plain = report.drop_repeats(everything)[0]
    for i, group in enumerate(groups):
        g = text.GroupReport(
            label=report.group_label(group),
            tidy=group,
            summary=report.summarize(group),
            baselines=_group_baselines(baselines, group),
            primary=report.primary_metric(group),
        )
        suffix = "" if len(groups) == 1 else f"-g{i + 1}"
        g.verdicts = verdicts.build(g.tidy, g.summary, g.primary, plain, g.baselines)
        g.figures = _figures(g, histories, palette, out_dir, suffix)
        g.summary = _with_verdicts(g.summary, g.verdicts)
        files += [f.path for f in g.figures]
        frames.append(g.summary.assign(group=i + 1, group_label=g.label, rank_by=g.primary))
        reports.append(g)
    trials_csv, board_csv = out_dir / "trials.csv", out_dir / "leaderboard.csv"
    tidy.to_csv(trials_csv, index=False)
    pd.concat(frames).to_csv(board_csv, index=False)
    tests_csv = out_dir / "tests.csv"
    pd.concat(
        [verdicts.tests_frame(g.verdicts).assign(group=i + 1) for i, g in enumerate(reports)]
    ).to_csv(tests_csv, index=False)
    md, page = out_dir / "leaderboard.md", out_dir / "report.html"
    md.write_text(text.document_markdown(experiment, reports, notes), encoding="utf-8")
    short = out_dir / "summary.md"
    excerpt = readme.document(reports)
    short.write_text(excerpt, encoding="utf-8")
    page.write_text(html_report.render(experiment, reports, notes), encoding="utf-8")
    return ReportOutcome(
        summary=reports[0].summary,
        files=[md, short, board_csv, trials_csv, tests_csv, page, *files],
        n_trials=len(tidy),
        parent_run_ids=sorted(set(tidy["parent_run_id"])),
        readme=excerpt,
    )


def log_report_run(uri: str, experiment: str, outcome: ReportOutcome) -> str:
    """Log the report's files to a new run of the experiment tagged ``mtlbench.kind=report``.

    ``mtlbench report`` covers every study of an experiment, so it gets its own run rather
    than borrowing one study's parent: each call leaves a snapshot, the newest is current.
    """
    run = Tracker(uri, experiment).start_run(
        "report",
        params={"n_trials": outcome.n_trials, "n_parent_runs": len(outcome.parent_run_ids)},
        tags={KIND_TAG: "report", "mtlbench.parent_run_ids": ",".join(outcome.parent_run_ids)},
    )
    try:
        for f in outcome.files:
            run.log_artifact(f)
    except BaseException:
        run.end("FAILED")
        raise
    run.end("FINISHED")
    return run.run_id
