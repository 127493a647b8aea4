"""Run a study: every trial of a grid (strategies x learning rates x seeds), tracked in MLflow.

One parent MLflow run per study, one child run per trial. After the last trial the results are
read back from MLflow (the same path ``mtlbench report`` uses), summarised, written to the
output folder and logged as artifacts of the parent run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mtlbench import weighting
from mtlbench.config import RunConfig, sweep_specs
from mtlbench.infra import interrupts
from mtlbench.infra.progress import NullReporter, Reporter
from mtlbench.tracking import (
    KIND_TAG,
    SIGNATURE_TAG,
    STATUS_TAG,
    ChildRun,
    TrackedRun,
    Tracker,
)
from mtlbench.training import checkpoint
from mtlbench.training.fit import TrialResult, TrialSpec, fit, trial_params

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from mtlbench.training.prepare import PreparedData


@dataclass(frozen=True)
class StudyOutcome:
    parent_run_id: str
    results: list[TrialResult]
    summary: pd.DataFrame
    files: list[Path]
    seconds: float
    failed: tuple[str, ...] = ()  # labels of trials that raised an error (see their runs)


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
    uri: str,
    experiment: str,
    parent: TrackedRun | None,
    parent_ids: list[str] | None,
    out_dir: Path,
) -> tuple[pd.DataFrame, list[Path]]:
    """Read the study's trials back from MLflow, write the report folder (leaderboard, figures,
    report.html; see :mod:`mtlbench.report.files`) and log its files to ``parent``.

    ``parent_ids`` None means every study of the experiment. Single-task baselines may come
    from any study of the experiment with the same data, split, image size, backbone and
    epochs; every multi-task trial they apply to gets ``test/delta_m`` logged.
    """
    from mtlbench.report.files import build_report

    outcome = build_report(uri, experiment, parent_ids, out_dir)
    if parent is not None:
        for f in outcome.files:
            parent.log_artifact(f)
    return outcome.summary, outcome.files


def study_signature(cfg: RunConfig, data_params: dict[str, str]) -> str:
    """Hash of everything that defines a study's trials and their training (not where it
    runs), so ``--resume`` only continues a study that asked for exactly the same work."""
    d = cfg.to_dict()
    d["data"].pop("cache_dir", None)
    for key in ("device", "checkpoint_dir", "keep_checkpoints", "eval_batch_size"):
        d["train"].pop(key, None)
    d["search"] = {
        k: d["search"][k]
        for k in ("strategies", "lrs", "seeds", "strategy_params", "scalarization_sweep")
    }
    d.pop("tracking")
    d.pop("output")
    d["data_sha256"] = data_params["data_sha256"]
    d["split_sha256"] = data_params["split_sha256"]
    blob = json.dumps(d, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def trial_key(strategy: str, lr: float | str, seed: int | str) -> tuple[str, str, str]:
    return strategy, f"{float(lr):g}", str(seed)


FINAL_STATUSES = ("finished", "diverged", "pruned")


def run_study(
    cfg: RunConfig, reporter: Reporter | None = None, *, resume: bool = False
) -> StudyOutcome:
    """Run every trial of the grid; with ``resume``, continue the newest unfinished study with
    the same signature: finished trials are kept, interrupted ones continue from their last
    checkpoint in the same MLflow run, missing ones start."""
    from mtlbench.training.prepare import prepare_data, resolve_device

    reporter = reporter or NullReporter()
    start = time.perf_counter()
    validate_strategies(cfg)
    if cfg.search.search == "optuna":
        from mtlbench.runs.optuna.study import run_optuna

        return run_optuna(cfg, reporter)
    device = resolve_device(cfg.train.device)
    data = prepare_data(cfg.data, device, reporter)
    tracker = Tracker(cfg.tracking.resolved_uri, cfg.tracking.experiment)
    specs = grid_trials(cfg)
    signature = study_signature(cfg, data.params)
    parent = tracker.find_unfinished_study(signature) if resume else None
    children: dict[tuple[str, str, str], ChildRun] = {}
    if parent is not None:
        parent.reopen()
        children = {trial_key(c.strategy, c.lr, c.seed): c for c in tracker.children(parent)}
        reporter.info(f"resuming study {parent.run_id} ({len(children)} trials already started)")
    else:
        if resume:
            reporter.info("nothing to resume for this configuration: starting a new study")
        parent = tracker.start_run(
            f"grid {','.join(cfg.search.strategies)}",
            params=study_params(cfg, data.params),
            tags={KIND_TAG: "study", "mtlbench.n_trials": len(specs), SIGNATURE_TAG: signature},
        )
    reporter.info(
        f"{len(specs)} trials on {device}; MLflow: {cfg.tracking.resolved_uri} "
        f"(experiment {cfg.tracking.experiment!r}, parent run {parent.run_id})"
    )
    plan: list[PlannedTrial] = []
    for spec in specs:
        previous = children.get(trial_key(spec.strategy, spec.lr, spec.seed))
        if previous is None or previous.status not in FINAL_STATUSES:
            plan.append(PlannedTrial(spec, previous.run.run_id if previous else None))
    if len(plan) < len(specs):
        reporter.info(f"{len(specs) - len(plan)} trials already finished: kept")
    outcomes: list[TrialOutcome] = []
    try:
        with reporter.progress("trials", total=len(specs)) as bar:
            bar.advance(len(specs) - len(plan))
            if cfg.search.workers > 1 and len(plan) > 1:
                from mtlbench.runs.pool import run_pool

                for outcome in run_pool(cfg, parent.run_id, plan, reporter):
                    outcomes.append(outcome)
                    _report_outcome(outcome, reporter)
                    bar.advance(1)
            else:
                for planned in plan:
                    outcome = execute_trial(planned, cfg, data, device, tracker, parent, reporter)
                    outcomes.append(outcome)
                    _report_outcome(outcome, reporter)
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
    failed = tuple(o.label for o in outcomes if o.status == "failed")
    parent.end("FAILED" if failed else "FINISHED")
    results = [o.result for o in outcomes if o.result is not None]
    return StudyOutcome(parent.run_id, results, summary, files, time.perf_counter() - start, failed)


@dataclass(frozen=True)
class PlannedTrial:
    spec: TrialSpec
    run_id: str | None  # an interrupted trial's MLflow run to continue, or None for a new run


@dataclass(frozen=True)
class TrialOutcome:
    label: str
    run_id: str
    status: str  # finished | diverged | pruned | failed
    message: str
    result: TrialResult | None


# Shielded as a whole, training excepted (``interruptible`` below): an interrupt that arrives
# while the run is created or closed waits until the run is in a state --resume understands.
@interrupts.shield
def execute_trial(
    planned: PlannedTrial,
    cfg: RunConfig,
    data: PreparedData,
    device: torch.device,
    tracker: Tracker,
    parent: TrackedRun,
    reporter: Reporter,
) -> TrialOutcome:
    """Run one planned trial in its MLflow run (new, or reopened to continue from its last
    checkpoint). An error ends the trial as FAILED (traceback logged) and is returned, not
    raised, so the rest of the grid goes on; Ctrl-C marks the run KILLED and propagates."""
    spec = planned.spec
    start = time.perf_counter()
    if planned.run_id is not None:
        child = TrackedRun(tracker.client, planned.run_id)
        child.reopen()
    else:
        child = tracker.start_run(
            spec.label,
            params=trial_params(spec, cfg, data, device),
            tags={KIND_TAG: "trial", "mtlbench.parent_name": cfg.tracking.experiment},
            parent=parent,
        )
    folder = checkpoint.root_for(cfg.train.checkpoint_dir, cfg.tracking.resolved_uri)
    folder = folder / child.run_id
    child.set_tags({"mtlbench.checkpoint_dir": folder})
    try:
        with interrupts.interruptible():
            result = fit(
                spec, cfg, data, device, run=child, reporter=reporter, checkpoint_dir=folder
            )
    except KeyboardInterrupt:
        child.set_tags({STATUS_TAG: "interrupted"})
        child.end("KILLED")
        raise
    except Exception as exc:  # a failed trial must not cost the rest of the grid
        message = _one_line(exc)
        child.set_tags({STATUS_TAG: "failed", "error": message})
        child.log_text(traceback.format_exc(), "error.txt")
        child.end("FAILED")
        return TrialOutcome(spec.label, child.run_id, "failed", message, None)
    # What a trial costs beyond its training steps (model build, validation and test passes,
    # checkpoints, MLflow calls): docs/performance.md tracks it against a 10% budget.
    wall = time.perf_counter() - start
    overhead = {
        "time/trial_s": wall,
        "time/train_s": result.train_seconds,
        "time/overhead_pct": 100 * (wall - result.train_seconds) / max(wall, 1e-9),
    }
    child.log_metrics(overhead, step=max(result.best_epoch, 0))
    child.end("FINISHED")
    return TrialOutcome(spec.label, child.run_id, result.status, result.message, result)


def _report_outcome(outcome: TrialOutcome, reporter: Reporter) -> None:
    if outcome.status == "failed":
        reporter.warn(
            f"{outcome.label}: FAILED ({outcome.message}); traceback in run {outcome.run_id}"
        )
    elif outcome.status != "finished":
        reporter.warn(f"{outcome.label}: {outcome.status} ({outcome.message})")


def _one_line(exc: BaseException) -> str:
    text = " ".join(f"{exc.__class__.__name__}: {exc}".split())
    return text[:300]
