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
import logging
import os
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mtlbench.config import RunConfig, config_from_dict
from mtlbench.infra import interrupts
from mtlbench.infra.errors import UserError
from mtlbench.infra.progress import NullReporter, Reporter
from mtlbench.runs.optuna.space import Objective, suggest, with_params
from mtlbench.runs.optuna.storage import SilentTrials, count, fail_stale_trials

if TYPE_CHECKING:
    from pathlib import Path

    import optuna
    import torch

    from mtlbench.tracking import TrackedRun, Tracker
    from mtlbench.training.fit import TrialResult
    from mtlbench.training.prepare import PreparedData

# MLflow tags of Optuna runs (parent: study name; child: study name and trial number).
STUDY_TAG = "mtlbench.study_name"
TRIAL_TAG = "mtlbench.trial_number"
RETRY_TAG = "mtlbench.retry_of"  # the trial number a retried trial repeats
WORKER_TAG = "mtlbench.worker"  # host:pid of the worker that ran the trial
# Study user attributes (written once by the creator; n_trials updated by a re-run).
ATTR_CONFIG = "mtlbench.config"
ATTR_OBJECTIVE = "mtlbench.objective"
ATTR_PARENT = "mtlbench.mlflow_parent_run_id"
ATTR_N_TRIALS = "mtlbench.n_trials"
ATTR_DATA = "mtlbench.data"  # data_sha256 and split_sha256 every worker must reproduce
ATTR_DEFINITION = "mtlbench.definition"
# Trial user attributes.
STATUS_ATTR = "mtlbench.status"  # finished | pruned | diverged
RUN_ATTR = "mtlbench.mlflow_run_id"
SURPLUS_ATTR = "mtlbench.surplus"

MAX_CONSECUTIVE_FAILURES = 3
_SURPLUS_MARK = "mtlbench: surplus trial"


class Surplus(Exception):
    """This trial is beyond the study's N; it is given up before sampling anything."""


class TrialsFailed(UserError):
    """Several trials in a row raised an error: a bug or a broken setup, not bad luck."""


@dataclass(frozen=True)
class StudyContext:
    """What a worker reads back from the study."""

    name: str
    cfg: RunConfig
    objective: Objective
    parent_run_id: str
    data: Mapping[str, str]

    @staticmethod
    def from_study(study: optuna.Study) -> StudyContext:
        attrs = study.user_attrs
        missing = [k for k in (ATTR_CONFIG, ATTR_OBJECTIVE, ATTR_PARENT) if k not in attrs]
        if missing:
            raise UserError(
                f"Optuna study {study.study_name!r} was not created by `mtlbench run --search "
                f"optuna` (missing user attributes {', '.join(missing)})"
            )
        return StudyContext(
            name=study.study_name,
            cfg=config_from_dict(attrs[ATTR_CONFIG]),
            objective=Objective.from_attrs(attrs[ATTR_OBJECTIVE]),
            parent_run_id=str(attrs[ATTR_PARENT]),
            data=dict(attrs.get(ATTR_DATA) or {}),
        )


def target(study: optuna.Study) -> int:
    """N, read each time: a re-run with a larger --n-trials extends a study other workers run."""
    return int(study.user_attrs[ATTR_N_TRIALS])


def beyond_budget(study: optuna.Study, number: int) -> bool:
    """Whether trial ``number`` is surplus: N trials with smaller numbers are already finished,
    running or queued. The lowest-numbered of several racing trials always stays in budget."""
    from optuna.trial import TrialState

    taken = study.get_trials(
        deepcopy=False,
        states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING),
    )
    return sum(t.number < number for t in taken) >= target(study)


def worker_seed(base: int, index: int | None, n_existing: int) -> int:
    """Sampler seed of worker ``index`` joining a study that already has ``n_existing`` trials.

    A fresh study's first worker uses the base seed (a one-worker study is reproducible). Any
    other worker, and any worker of a continued study, needs another stream: a sampler seeded
    as before redraws the very parameters of the earlier trials. Random for a worker without
    an index (``mtlbench worker`` without --worker-index)."""
    if index is None:
        return secrets.randbelow(2**31)
    return (base + 10_007 * index + 1_000_003 * n_existing) % 2**31


def make_sampler(ctx: StudyContext, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    import optuna

    if ctx.objective.kind == "pareto":
        # A population of about a quarter of the budget, so small studies still evolve.
        population = max(4, min(50, n_trials // 4))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(ctx: StudyContext) -> optuna.pruners.BasePruner:
    import optuna

    s = ctx.cfg.search
    if s.pruner == "none" or not ctx.objective.prunable:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=s.prune_startup_trials, n_warmup_steps=s.prune_warmup_epochs
    )


class _DropExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # After Ctrl-C, Optuna reports the interrupted trial as failed, with a traceback;
        # the CLI's one-line "interrupted" message says it all.
        return _SURPLUS_MARK not in record.getMessage() and not interrupts.stopping()


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO; mtlbench reports through its reporter instead. Failed
    trials still show (WARNING), except the surplus trials this module gives up on purpose
    and trials stopped by Ctrl-C."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _DropExpected) for f in handler.filters):
            handler.addFilter(_DropExpected())


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
        import optuna

        from mtlbench.tracking import KIND_TAG, STATUS_TAG
        from mtlbench.training import checkpoint
        from mtlbench.training.fit import TrialStopped, fit, trial_params

        if beyond_budget(self.study, trial.number):
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise Surplus(f"{_SURPLUS_MARK}: the study already holds or runs its trials")
        cfg = self.ctx.cfg
        spec, items = suggest(trial, cfg)
        trial_cfg = with_params(cfg, items)
        ckpt_root = checkpoint.root_for(cfg.train.checkpoint_dir, cfg.tracking.resolved_uri)
        retry_of, resumable = self._close_dead_run(trial, ckpt_root)
        tags: dict[str, Any] = {
            KIND_TAG: "trial",
            "mtlbench.parent_name": cfg.tracking.experiment,
            STUDY_TAG: self.ctx.name,
            TRIAL_TAG: trial.number,
            WORKER_TAG: self.worker_id,
        }
        if retry_of is not None:
            tags[RETRY_TAG] = retry_of
        if resumable is not None:
            # The dead worker's run has a checkpoint on this machine: continue it in place.
            child = resumable
            child.reopen()
            child.set_tags(tags)
            child.set_tags({"mlflow.runName": f"#{trial.number} {spec.label}"})
        else:
            child = self.tracker.start_run(
                f"#{trial.number} {spec.label}",
                params=trial_params(spec, trial_cfg, self.data, self.device),
                tags=tags,
                parent=self.parent,
            )
        trial.set_user_attr(RUN_ATTR, child.run_id)
        objective = self.ctx.objective

        last_epoch = trial_cfg.train.epochs - 1

        @interrupts.shield  # storage calls, made from inside the interruptible fit
        def on_epoch(epoch: int, val: dict[str, float]) -> None:
            value = objective.values(val)[0]
            trial.report(value, epoch)
            # After the last epoch only the test evaluation is left: nothing to save by pruning.
            if epoch < last_epoch and trial.should_prune():
                raise TrialStopped(f"median pruner at epoch {epoch}: {objective.kind}={value:.4g}")

        try:
            with interrupts.interruptible():
                result = fit(
                    spec,
                    trial_cfg,
                    self.data,
                    self.device,
                    run=child,
                    reporter=self.reporter,
                    on_epoch=on_epoch if objective.prunable else None,
                    checkpoint_dir=ckpt_root / child.run_id,
                )
        except KeyboardInterrupt:
            child.set_tags({STATUS_TAG: "interrupted"})
            child.end("KILLED")
            raise
        except Exception as exc:
            message = " ".join(f"{exc.__class__.__name__}: {exc}".split())[:300]
            trial.set_user_attr("mtlbench.error", message)
            child.set_tags({STATUS_TAG: "failed", "error": message})
            _log_traceback(child)
            child.end("FAILED")
            self.reporter.warn(f"trial #{trial.number} {spec.label}: FAILED ({message})")
            raise
        child.end("FINISHED")
        self.results.append(result)
        trial.set_user_attr(STATUS_ATTR, result.status)
        if result.status != "finished":
            # Pruned, or diverged: a result (it counts towards N), but without a value.
            self.reporter.info(f"trial #{trial.number} {spec.label}: {result.status}")
            raise optuna.TrialPruned(result.message)
        values = objective.values(result.val)
        if objective.kind == "val_delta_m":
            child.log_metrics({"best_val/delta_m": values[0]}, step=result.best_epoch)
        shown = ", ".join(f"{n}={v:.4g}" for n, v in zip(objective.names, values, strict=True))
        self.reporter.info(f"trial #{trial.number} {spec.label}: {shown}")
        return values if objective.kind == "pareto" else values[0]

    def _close_dead_run(
        self, trial: optuna.Trial, ckpt_root: Path
    ) -> tuple[int | None, TrackedRun | None]:
        """For a retry of a dead worker's trial: the trial number it repeats, and that trial's
        MLflow run when it left a checkpoint on this machine (the retry continues it from
        there); a run without a checkpoint is marked failed and the retry starts afresh."""
        from optuna.trial import TrialState

        from mtlbench.tracking import STATUS_TAG
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
                    STATUS_TAG: "failed",
                    "error": f"worker died (no heartbeat); retried as trial #{trial.number}",
                }
            )
            run.end("KILLED")
        return int(system.get("failed_trial", previous)), resumable


def _log_traceback(run: Any) -> None:
    import traceback

    log_text = getattr(run, "log_text", None)
    if log_text is not None:
        log_text(traceback.format_exc(), "error.txt")


def find_parent(tracker: Tracker, ctx: StudyContext, reporter: Reporter) -> TrackedRun:
    """The study's MLflow parent run: the one recorded in the study if this store has it, else
    the oldest run tagged with the study name, else a new one (a worker whose MLflow store is
    not the one the study was created with)."""
    from mtlbench.tracking import KIND_TAG

    found = tracker.find_runs({KIND_TAG: "study", STUDY_TAG: ctx.name})
    for run, _ in found:
        if run.run_id == ctx.parent_run_id:
            return run
    if found:
        return found[0][0]
    reporter.warn(
        f"no parent run of study {ctx.name!r} in MLflow store {tracker.uri}; creating one "
        "(workers should share the study's MLflow tracking server)"
    )
    return tracker.start_run(f"optuna {ctx.name}", tags={KIND_TAG: "study", STUDY_TAG: ctx.name})


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
