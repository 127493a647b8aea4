"""Optuna workers: run trials of an existing study until it holds its N finished trials.

Every worker (the ``run`` process itself, a local worker process, ``mtlbench worker`` on
another machine) does the same loop on the shared storage, so nothing here schedules work:

* fail trials whose heartbeat stopped (their worker died) -> Optuna re-queues them (WAITING)
  with the same parameters and the next ``ask`` runs them;
* stop once the study holds N finished trials (COMPLETE or PRUNED; a diverged trial is PRUNED
  with user attribute ``mtlbench.status=diverged``);
* when every remaining slot is being run by someone else, wait: those trials finish, or go
  stale and come back as retries;
* otherwise run one trial. Two workers may ask at the same moment for the last slot; the one
  whose trial number ranks beyond N among the done/running/queued trials gives its trial up
  (state FAIL, user attribute ``mtlbench.surplus``) before sampling anything. So the study ends
  with exactly N finished trials and never trains one twice.

Everything a worker needs (the run configuration, the objective, the MLflow parent run) is
stored in the study's user attributes by the process that created the study.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mtlbench.config import RunConfig
from mtlbench.infra import interrupts
from mtlbench.infra.errors import UserError
from mtlbench.infra.progress import NullReporter, Reporter
from mtlbench.runs.optuna.context import (
    _SURPLUS_MARK,
    MAX_CONSECUTIVE_FAILURES,
    RUN_ATTR,
    STATUS_ATTR,
    SURPLUS_ATTR,
    StudyContext,
    Surplus,
    TrialsFailed,
    beyond_budget,
    make_pruner,
    make_sampler,
    quiet_optuna,
    target,
    worker_seed,
)
from mtlbench.runs.optuna.space import suggest, with_params
from mtlbench.runs.optuna.storage import SilentTrials, count, fail_stale_trials
from mtlbench.tracking import (
    KIND_TAG,
    PARENT_NAME_TAG,
    RETRY_TAG,
    RUN_NAME_TAG,
    STATUS_TAG,
    STUDY_TAG,
    TRIAL_TAG,
    WORKER_TAG,
    RunKind,
    Status,
    TrackedRun,
)

if TYPE_CHECKING:
    from pathlib import Path

    import optuna
    import torch

    from mtlbench.tracking import Tracker
    from mtlbench.training.fit import TrialResult, TrialSpec
    from mtlbench.training.prepare import PreparedData


class TrialError(Exception):
    """A trial raised an error; its MLflow run holds the traceback (error.txt)."""


class TrialRunner:
    """Runs trials of one study in this process."""

    def __init__(
        self,
        study: optuna.Study,
        ctx: StudyContext,
        data: PreparedData,
        device: torch.device,
        tracker: Tracker,
        parent: TrackedRun,
        reporter: Reporter | None = None,
    ) -> None:
        self.study = study
        self.ctx = ctx
        self.data = data
        self.device = device
        self.tracker = tracker
        self.parent = parent
        self.reporter = reporter or NullReporter()
        self.results: list[TrialResult] = []
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        heartbeat = ctx.cfg.search.heartbeat_s
        self.poll_s = float(min(heartbeat, 5))
        self.silent = SilentTrials()

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> None:
        """Run trials until the study holds its N finished trials.

        Shielded, so that Ctrl-C / SIGTERM interrupts only training and waiting, never one of
        Optuna's storage calls (which would leave a SQLite storage locked for the others)."""
        with interrupts.shielded():
            self._loop()

    def _loop(self) -> None:
        quiet_optuna()
        failures = 0
        waiting_said = False
        shown = count(self.study).finished
        with self.reporter.progress(f"study {self.ctx.name}", total=target(self.study)) as bar:
            bar.advance(shown)
            while True:
                fail_stale_trials(self.study, self.silent)
                n, c = target(self.study), count(self.study)
                bar.advance(max(0, c.finished - shown))
                shown = max(shown, c.finished)
                if c.finished >= n:
                    return
                if c.taken >= n and c.waiting == 0:
                    if not waiting_said:
                        self.reporter.info(
                            f"waiting for {c.running} running trial(s) of other workers (a dead "
                            f"worker's trial is retried {2 * self.ctx.cfg.search.heartbeat_s} s "
                            "after its last heartbeat)"
                        )
                        waiting_said = True
                    with interrupts.interruptible():
                        time.sleep(self.poll_s)
                    continue
                waiting_said = False
                last = self._run_one()
                failures = failures + 1 if last is not None else 0
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise TrialsFailed(
                        f"{failures} trials in a row failed with an error (last: {last}); "
                        "their MLflow runs hold the tracebacks (error.txt)"
                    )

    def _run_one(self) -> str | None:
        """One ``optimize`` step; returns the error of a trial that failed, else None."""
        from optuna.trial import FrozenTrial, TrialState

        ran: list[FrozenTrial] = []
        self.study.optimize(
            self._objective,
            n_trials=1,
            catch=(Exception,),
            callbacks=[lambda _study, frozen: ran.append(frozen)],
            gc_after_trial=True,
        )
        if not ran or ran[0].state != TrialState.FAIL or ran[0].user_attrs.get(SURPLUS_ATTR):
            return None
        return str(ran[0].user_attrs.get("mtlbench.error", "unknown error"))

    # --- one trial ----------------------------------------------------------------------------

    def _objective(self, trial: optuna.Trial) -> float | list[float]:
        """Optuna's objective: one trial through :func:`mtlbench.runs.trial.run_trial`.

        A failed trial raises (Optuna records it FAIL); a pruned or diverged one raises
        ``TrialPruned`` (it counts towards N, without a value)."""
        import optuna

        from mtlbench.runs.trial import run_trial

        if beyond_budget(self.study, trial.number):
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise Surplus(f"{_SURPLUS_MARK}: the study already holds or runs its trials")
        spec, items = suggest(trial, self.ctx.cfg)
        trial_cfg = with_params(self.ctx.cfg, items)
        child = self._open_run(trial, spec, trial_cfg)
        objective = self.ctx.objective
        on_epoch = self._pruning_callback(trial, trial_cfg) if objective.prunable else None
        outcome = run_trial(
            spec, trial_cfg, self.data, self.device, child, self.reporter, on_epoch=on_epoch
        )
        result = outcome.result
        if result is None:  # failed: run_trial tagged the run and logged the traceback
            trial.set_user_attr("mtlbench.error", outcome.message)
            self.reporter.warn(f"trial #{trial.number} {spec.label}: FAILED ({outcome.message})")
            raise TrialError(outcome.message)
        self.results.append(result)
        trial.set_user_attr(STATUS_ATTR, result.status)
        if result.status != Status.FINISHED:
            self.reporter.info(f"trial #{trial.number} {spec.label}: {result.status}")
            raise optuna.TrialPruned(result.message)
        values = objective.values(result.val)
        if objective.kind == "val_delta_m":
            child.log_params({"best.val_delta_m": repr(float(values[0]))})
        shown = ", ".join(f"{n}={v:.4g}" for n, v in zip(objective.names, values, strict=True))
        self.reporter.info(f"trial #{trial.number} {spec.label}: {shown}")
        return values if objective.kind == "pareto" else values[0]

    def _open_run(self, trial: optuna.Trial, spec: TrialSpec, trial_cfg: RunConfig) -> TrackedRun:
        """The trial's MLflow run: a dead worker's run continued in place when it left a
        checkpoint on this machine, else a new child run of the study."""
        from mtlbench.runs.trial import checkpoint_root
        from mtlbench.training.fit import trial_params

        retry_of, resumable = self._close_dead_run(trial, checkpoint_root(self.ctx.cfg))
        tags: dict[str, Any] = {
            KIND_TAG: RunKind.TRIAL,
            PARENT_NAME_TAG: self.ctx.cfg.tracking.experiment,
            STUDY_TAG: self.ctx.name,
            TRIAL_TAG: trial.number,
            WORKER_TAG: self.worker_id,
        }
        if retry_of is not None:
            tags[RETRY_TAG] = retry_of
        if resumable is not None:
            child = resumable
            child.reopen()
            child.set_tags(tags)
            child.set_tags({RUN_NAME_TAG: f"#{trial.number} {spec.label}"})
        else:
            child = self.tracker.start_run(
                f"#{trial.number} {spec.label}",
                params=trial_params(spec, trial_cfg, self.data, self.device),
                tags=tags,
                parent=self.parent,
            )
        trial.set_user_attr(RUN_ATTR, child.run_id)
        return child

    def _pruning_callback(
        self, trial: optuna.Trial, trial_cfg: RunConfig
    ) -> Callable[[int, dict[str, float]], None]:
        """Reports each epoch's objective to Optuna and stops the trial when it should prune."""
        from mtlbench.training.fit import TrialStopped

        objective = self.ctx.objective
        last_epoch = trial_cfg.train.epochs - 1

        @interrupts.shield  # storage calls, made from inside the interruptible fit
        def on_epoch(epoch: int, val: dict[str, float]) -> None:
            value = objective.values(val)[0]
            trial.report(value, epoch)
            # After the last epoch only the test evaluation is left: nothing to save by pruning.
            if epoch < last_epoch and trial.should_prune():
                raise TrialStopped(f"median pruner at epoch {epoch}: {objective.kind}={value:.4g}")

        return on_epoch

    def _close_dead_run(
        self, trial: optuna.Trial, ckpt_root: Path
    ) -> tuple[int | None, TrackedRun | None]:
        """For a retry of a dead worker's trial: the trial number it repeats, and that trial's
        MLflow run when it left a checkpoint on this machine (the retry continues it from
        there); a run without a checkpoint is marked failed and the retry starts afresh."""
        from optuna.trial import TrialState

        from mtlbench.training import checkpoint

        mine = [
            t
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number == trial.number
        ]
        # Written by Optuna's retry callback on the re-queued copy of a stale trial.
        system = mine[0].system_attrs if mine else {}
        history = system.get("retry_history") or []
        if not history:
            return None, None
        previous = int(history[-1])
        resumable: TrackedRun | None = None
        for run, status in self.tracker.find_runs(
            {STUDY_TAG: self.ctx.name, TRIAL_TAG: str(previous)}
        ):
            if status != "RUNNING":
                continue
            if resumable is None and checkpoint.exists(ckpt_root / run.run_id, checkpoint.LAST):
                resumable = run
                continue
            run.set_tags(
                {
                    STATUS_TAG: Status.FAILED,
                    "error": f"worker died (no heartbeat); retried as trial #{trial.number}",
                }
            )
            run.end("KILLED")
        return int(system.get("failed_trial", previous)), resumable


def find_parent(tracker: Tracker, ctx: StudyContext, reporter: Reporter) -> TrackedRun:
    """The study's MLflow parent run: the one recorded in the study if this store has it, else
    the oldest run tagged with the study name, else a new one (a worker whose MLflow store is
    not the one the study was created with)."""
    found = tracker.find_runs({KIND_TAG: RunKind.STUDY, STUDY_TAG: ctx.name})
    for run, _ in found:
        if run.run_id == ctx.parent_run_id:
            return run
    if found:
        return found[0][0]
    reporter.warn(
        f"no parent run of study {ctx.name!r} in MLflow store {tracker.uri}; creating one "
        "(workers should share the study's MLflow tracking server)"
    )
    return tracker.start_run(
        f"optuna {ctx.name}", tags={KIND_TAG: RunKind.STUDY, STUDY_TAG: ctx.name}
    )


def check_data(ctx: StudyContext, params: Mapping[str, str]) -> None:
    for key in ("data_sha256", "split_sha256"):
        want = ctx.data.get(key)
        if want is not None and params.get(key) != want:
            raise UserError(
                f"this worker's data differs from the study's ({key} {params.get(key)} != {want}); "
                "point --data at the same images the study was created with"
            )


@dataclass(frozen=True)
class WorkerOptions:
    """Per-worker settings that do not change what a study computes."""

    device: str | None = None  # else the study's train.device
    threads: int | None = None  # torch intra-op threads (CPU); None: torch's default
    worker_index: int | None = None  # seeds the sampler; None: random
    tracking_uri: str | None = None  # else the one the study was created with
    data: str | None = None  # the same images at another path on this machine
    cache_dir: str | None = None


def apply_options(cfg: RunConfig, opts: WorkerOptions) -> RunConfig:
    data, train, tracking = cfg.data, cfg.train, cfg.tracking
    if opts.data is not None:
        data = dataclasses.replace(data, source=opts.data)
    if opts.cache_dir is not None:
        data = dataclasses.replace(data, cache_dir=opts.cache_dir)
    if opts.device is not None:
        train = dataclasses.replace(train, device=opts.device)
    if opts.tracking_uri is not None:
        tracking = dataclasses.replace(tracking, tracking_uri=opts.tracking_uri)
    return dataclasses.replace(cfg, data=data, train=train, tracking=tracking)


def join_study(
    study_name: str, storage_url: str, opts: WorkerOptions, reporter: Reporter | None = None
) -> list[TrialResult]:
    """``mtlbench worker``: join an existing study and run trials until it holds N."""
    reporter = reporter or NullReporter()
    import torch

    from mtlbench.runs.optuna.storage import load_study, open_storage
    from mtlbench.tracking import Tracker
    from mtlbench.training.prepare import prepare_data, resolve_device

    if opts.threads is not None:
        torch.set_num_threads(max(1, opts.threads))
    # Heartbeat settings live in the study's config, which needs the storage to read: open it
    # once to read them, then with the study's own settings.
    probe = load_study(open_storage(storage_url, heartbeat_s=60, max_retry=0), study_name)
    ctx = StudyContext.from_study(probe)
    ctx = dataclasses.replace(ctx, cfg=apply_options(ctx.cfg, opts))
    s = ctx.cfg.search
    storage = open_storage(storage_url, heartbeat_s=s.heartbeat_s, max_retry=s.max_retry)
    seed = worker_seed(s.sampler_seed, opts.worker_index, len(probe.get_trials(deepcopy=False)))
    study = load_study(
        storage,
        study_name,
        sampler=make_sampler(ctx, seed, target(probe)),
        pruner=make_pruner(ctx),
    )
    device = resolve_device(ctx.cfg.train.device)
    data = prepare_data(ctx.cfg.data, device, reporter)
    check_data(ctx, data.params)
    tracker = Tracker(ctx.cfg.tracking.resolved_uri, ctx.cfg.tracking.experiment)
    parent = find_parent(tracker, ctx, reporter)
    reporter.info(
        f"worker {socket.gethostname()}:{os.getpid()} joined study {study_name!r} on {device} "
        f"({torch.get_num_threads()} threads); {count(study).finished}/{target(study)} finished"
    )
    runner = TrialRunner(study, ctx, data, device, tracker, parent, reporter)
    runner.run()
    return runner.results
