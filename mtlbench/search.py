"""Run a study: every trial of a grid (strategies x learning rates x seeds), tracked in MLflow.

One parent MLflow run per study, one child run per trial. After the last trial the results are
read back from MLflow (the same path ``mtlbench report`` uses), summarised, written to the
output folder and logged as artifacts of the parent run.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mtlbench import weighting
from mtlbench.config import RunConfig, sweep_specs
from mtlbench.progress import NullReporter, Reporter
from mtlbench.tracking import (
    KIND_TAG,
    STATUS_TAG,
    TrackedRun,
    Tracker,
    load_histories,
    load_trials,
    log_metrics,
)
from mtlbench.train import TrialResult, TrialSpec, fit, trial_params

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class StudyOutcome:
    parent_run_id: str
    results: list[TrialResult]
    summary: pd.DataFrame
    files: list[Path]
    seconds: float


def grid_trials(cfg: RunConfig) -> list[TrialSpec]:
    from mtlbench.weighting.registry import expand_spec

    s = cfg.search
    specs = [x for spec in s.strategies for x in expand_spec(spec)]
    specs += [x for x in sweep_specs(s.scalarization_sweep) if x not in specs]
    return [TrialSpec(st, lr, seed) for st, lr, seed in itertools.product(specs, s.lrs, s.seeds)]


def validate_strategies(cfg: RunConfig) -> None:
    """Fail before any work if a strategy spec or --strategy-param is invalid."""
    from mtlbench.weighting.registry import check_overrides

    for spec in cfg.search.strategies:
        weighting.resolve(spec, cfg.search.strategy_params)
    check_overrides(cfg.search.strategies, cfg.search.strategy_params)


def study_params(cfg: RunConfig, data_params: dict[str, str]) -> dict[str, str]:
    s, t, m = cfg.search, cfg.train, cfg.model
    return {
        "search": s.search,
        "strategies": ",".join(s.strategies),
        "lrs": ",".join(f"{lr:g}" for lr in s.lrs),
        "seeds": ",".join(str(x) for x in s.seeds),
        "strategy_params": ";".join(s.strategy_params) or "none",
        "scalarization_sweep": str(s.scalarization_sweep),
        "epochs": str(t.epochs),
        "batch_size": str(t.batch_size),
        "optimizer": t.optimizer,
        "backbone": m.backbone,
        "weights": m.weights,
        **data_params,
    }


def write_outputs(
    uri: str, experiment: str, parent: TrackedRun | None, parent_ids: list[str], out_dir: Path
) -> tuple[pd.DataFrame, list[Path]]:
    """Read the study's trials back from MLflow; write tables and the figure; log them.

    Single-task baselines may come from any study of the experiment with the same data,
    split, image size, backbone and epochs; every multi-task trial they apply to gets
    ``test/delta_m`` logged (earlier studies included, once baselines exist).
    """
    from mtlbench import plots, report
    from mtlbench.tasks import TASKS

    everything = report.tidy_trials(load_trials(uri, experiment))
    before = everything["test/delta_m"].copy()
    everything = report.with_delta_m(everything, report.single_task_baselines(everything))
    changed = everything["test/delta_m"].notna() & (everything["test/delta_m"] != before)
    for _, row in everything[changed].iterrows():
        log_metrics(uri, row["run_id"], {"test/delta_m": float(row["test/delta_m"])})
    tidy = everything[everything["parent_run_id"].isin(parent_ids)].reset_index(drop=True)
    summary = report.summarize(tidy)
    files = report.write_tables(tidy, summary, out_dir)
    keys = [*(f"val/{t.metric}" for t in TASKS), *(f"weight/{t.name}" for t in TASKS)]
    histories = load_histories(uri, list(tidy["run_id"]), keys)
    if not histories.empty:
        files.append(plots.curves_figure(histories, tidy, out_dir / "curves.png"))
    if parent is not None:
        for f in files:
            parent.log_artifact(f)
    return summary, files


def run_study(cfg: RunConfig, reporter: Reporter | None = None) -> StudyOutcome:
    from mtlbench.prepare import prepare_data, resolve_device

    reporter = reporter or NullReporter()
    start = time.perf_counter()
    validate_strategies(cfg)
    if cfg.search.search == "optuna":
        from mtlbench.study import run_optuna

        return run_optuna(cfg, reporter)
    device = resolve_device(cfg.train.device)
    data = prepare_data(cfg.data, device, reporter)
    tracker = Tracker(cfg.tracking.resolved_uri, cfg.tracking.experiment)
    specs = grid_trials(cfg)
    parent = tracker.start_run(
        f"grid {','.join(cfg.search.strategies)}",
        params=study_params(cfg, data.params),
        tags={KIND_TAG: "study", "mtlbench.n_trials": len(specs)},
    )
    reporter.info(
        f"{len(specs)} trials on {device}; MLflow: {cfg.tracking.resolved_uri} "
        f"(experiment {cfg.tracking.experiment!r}, parent run {parent.run_id})"
    )
    results: list[TrialResult] = []
    try:
        with reporter.progress("trials", total=len(specs)) as bar:
            for spec in specs:
                child = tracker.start_run(
                    spec.label,
                    params=trial_params(spec, cfg, data, device),
                    tags={KIND_TAG: "trial", "mtlbench.parent_name": cfg.tracking.experiment},
                    parent=parent,
                )
                try:
                    result = fit(spec, cfg, data, device, run=child, reporter=reporter)
                except BaseException:
                    child.set_tags({STATUS_TAG: "failed"})
                    child.end("KILLED")
                    raise
                child.end("FINISHED")
                results.append(result)
                if result.status != "finished":
                    reporter.warn(f"{spec.label}: {result.status} ({result.message})")
                bar.advance(1)
        summary, files = write_outputs(
            cfg.tracking.resolved_uri,
            cfg.tracking.experiment,
            parent,
            [parent.run_id],
            cfg.output_dir,
        )
    except BaseException:
        parent.end("KILLED")
        raise
    parent.end("FINISHED")
    return StudyOutcome(parent.run_id, results, summary, files, time.perf_counter() - start)
