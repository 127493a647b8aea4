"""A grid study: every (strategy, learning rate, seed), tracked in MLflow.

One parent MLflow run per study, one child run per trial. After the last trial the results are
read back from MLflow (the same path ``mtlbench report`` uses), summarised, written to the
output folder and logged as artifacts of the parent run.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mtlbench.config import RunConfig, sweep_specs
from mtlbench.infra.progress import Reporter
from mtlbench.report.verdict_stats import interior_simplex, static_spec
from mtlbench.runs import lr_auto
from mtlbench.runs.models import publish_models
from mtlbench.runs.observe import log_dataset
from mtlbench.runs.study import (
    StudyOutcome,
    fingerprint,
    study_definition,
    study_params,
    write_outputs,
)
from mtlbench.runs.trial import PlannedTrial, TrialOutcome, execute_trial, report_outcome
from mtlbench.tracking import (
    FINAL_STATUSES,
    KIND_TAG,
    N_TRIALS_TAG,
    SIGNATURE_TAG,
    ChildRun,
    RunKind,
    Status,
    TrackedRun,
    Tracker,
)
from mtlbench.training.fit import TrialSpec

if TYPE_CHECKING:
    import torch

    from mtlbench.training.prepare import PreparedData


TrialKey = tuple[str, float, int]  # strategy, lr, seed


def static_sweep_specs(divisions: int, n_tasks: int = 3) -> list[str]:
    """``static:`` specs of the interior simplex lattice (``--static-sweep N``; none for 0)."""
    if not divisions:
        return []
    return [static_spec(w) for w in interior_simplex(n_tasks, divisions)]


def grid_trials(
    cfg: RunConfig,
    lrs: tuple[float, ...] | None = None,
    tasks: Sequence[str] = ("age", "gender", "race"),
) -> list[TrialSpec]:
    """Every (strategy spec, lr, seed) of the grid for the dataset's ``tasks`` (names): ``stl``
    expands to one single-task model per task, the sweeps cover T weights; ``lrs`` replaces
    the configured grid (the widened grid of ``--lrs auto``)."""
    from mtlbench.weighting.registry import expand_spec

    s = cfg.search
    specs = [x for spec in s.strategies for x in expand_spec(spec, tasks)]
    specs += [x for x in sweep_specs(s.scalarization_sweep, len(tasks)) if x not in specs]
    specs += [x for x in static_sweep_specs(s.static_sweep, len(tasks)) if x not in specs]
    grid = s.lrs if lrs is None else lrs
    return [TrialSpec(st, lr, seed) for st, lr, seed in itertools.product(specs, grid, s.seeds)]


def study_signature(cfg: RunConfig, data_params: dict[str, str]) -> str:
    """Fingerprint of everything that defines a study's trials and their training (not where
    it runs, nor where the data lie), so ``--resume`` only continues a study that asked for
    exactly the same work."""
    return fingerprint(study_definition(cfg, data_params))


def trial_key(strategy: str, lr: float | str, seed: int | str) -> TrialKey:
    """A trial's identity; learning rates compare exactly (as floats), not by a rounded text."""
    return strategy, float(lr), int(seed)


def plan_trials(
    specs: list[TrialSpec], children: dict[tuple[str, float, int], ChildRun]
) -> list[PlannedTrial]:
    """The trials still to run: new ones, and started ones that did not reach a final status
    (they continue in their MLflow run from their last checkpoint)."""
    plan: list[PlannedTrial] = []
    for spec in specs:
        previous = children.get(trial_key(spec.strategy, spec.lr, spec.seed))
        if previous is None or previous.status not in FINAL_STATUSES:
            plan.append(PlannedTrial(spec, previous.run.run_id if previous else None))
    return plan


def _open_parent(
    cfg: RunConfig,
    tracker: Tracker,
    data: PreparedData,
    n_trials: int,
    reporter: Reporter,
    resume: bool,
) -> tuple[TrackedRun, dict[TrialKey, ChildRun]]:
    """The study's parent run (the newest unfinished one with the same signature when
    resuming, else a new one) and the trials it already started."""
    signature = study_signature(cfg, data.params)
    parent = tracker.find_unfinished_study(signature) if resume else None
    if parent is not None:
        parent.reopen()
        children = {trial_key(c.strategy, c.lr, c.seed): c for c in tracker.children(parent)}
        reporter.info(f"resuming study {parent.run_id} ({len(children)} trials already started)")
        return parent, children
    if resume:
        reporter.info("nothing to resume for this configuration: starting a new study")
    parent = tracker.start_run(
        f"grid {','.join(cfg.search.strategies)}",
        params=study_params(cfg, data.params),
        tags={KIND_TAG: RunKind.STUDY, N_TRIALS_TAG: n_trials, SIGNATURE_TAG: signature},
    )
    # The study's data on its parent run too: the runs table shows it with the children folded.
    log_dataset(tracker.client, parent.run_id, data.params)
    return parent, {}


def _run_plan(
    cfg: RunConfig,
    plan: list[PlannedTrial],
    n_specs: int,
    run: tuple[PreparedData, torch.device, Tracker, TrackedRun],
    reporter: Reporter,
) -> list[TrialOutcome]:
    data, device, tracker, parent = run
    outcomes: list[TrialOutcome] = []
    with reporter.progress("trials", total=n_specs) as bar:
        bar.advance(n_specs - len(plan))
        if cfg.search.workers > 1 and len(plan) > 1:
            from mtlbench.runs.pool import run_pool

            done = run_pool(cfg, parent.run_id, plan, reporter)
        else:
            done = (execute_trial(p, cfg, data, device, tracker, parent, reporter) for p in plan)
        for outcome in done:
            outcomes.append(outcome)
            report_outcome(outcome, reporter)
            bar.advance(1)
    return outcomes


def _next_grid(cfg: RunConfig, parent_id: str, lrs: tuple[float, ...]) -> tuple[float, ...] | None:
    """``--lrs auto``: the widened grid after a round, from the trials MLflow holds."""
    from mtlbench.report import tables
    from mtlbench.tracking import load_trials

    trials = load_trials(cfg.tracking.resolved_uri, cfg.tracking.experiment, [parent_id])
    chosen = lr_auto.chosen_lrs(tables.drop_repeats(tables.tidy_trials(trials))[0], lrs)
    return lr_auto.widen(lrs, chosen)


def run_grid(cfg: RunConfig, reporter: Reporter, *, resume: bool = False) -> StudyOutcome:
    """Run every trial of the grid; with ``resume``, continue the newest unfinished study with
    the same signature: finished trials are kept, interrupted ones continue from their last
    checkpoint in the same MLflow run, missing ones start. With ``--lrs auto`` the grid widens
    after each round (:mod:`mtlbench.runs.lr_auto`) and only the new lrs are trained."""
    from mtlbench.training.prepare import prepare_data, resolve_device

    start = time.perf_counter()
    device = resolve_device(cfg.train.device)
    data = prepare_data(cfg.data, device, reporter)
    tracker = Tracker(cfg.tracking.resolved_uri, cfg.tracking.experiment)
    lrs = cfg.search.lrs
    names = data.tasks.names
    specs = grid_trials(cfg, tasks=names)
    parent, children = _open_parent(cfg, tracker, data, len(specs), reporter, resume)
    reporter.info(
        f"{len(specs)} trials on {device}; MLflow: {cfg.tracking.resolved_uri} "
        f"(experiment {cfg.tracking.experiment!r}, parent run {parent.run_id})"
    )
    outcomes: list[TrialOutcome] = []
    try:
        for round_ in range(lr_auto.MAX_ROUNDS + 1):
            plan = plan_trials(specs, children)
            if len(plan) < len(specs):
                reporter.info(f"{len(specs) - len(plan)} trials already finished: kept")
            run = (data, device, tracker, parent)
            outcomes += _run_plan(cfg, plan, len(specs), run, reporter)
            if not cfg.search.lrs_auto or round_ == lr_auto.MAX_ROUNDS:
                break
            wider = _next_grid(cfg, parent.run_id, lrs)
            if wider is None:
                break
            lrs = wider
            reporter.info(f"--lrs auto: a chosen lr is at an edge; widening to {lrs}")
            specs = grid_trials(cfg, lrs, names)
            children = {trial_key(c.strategy, c.lr, c.seed): c for c in tracker.children(parent)}
        summary, files = write_outputs(
            cfg.tracking.resolved_uri,
            cfg.tracking.experiment,
            parent,
            [parent.run_id],
            cfg.output_dir,
        )
        publish_models(cfg, [parent.run_id], reporter)
    except BaseException:
        parent.end("KILLED")
        raise
    failed = tuple(o.label for o in outcomes if o.status == Status.FAILED)
    parent.end("FAILED" if failed else "FINISHED")
    results = [o.result for o in outcomes if o.result is not None]
    return StudyOutcome(parent.run_id, results, summary, files, time.perf_counter() - start, failed)
