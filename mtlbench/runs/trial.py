"""One trial's lifecycle in its MLflow run, shared by the grid, its process pool and Optuna.

:func:`run_trial` trains one (strategy, lr, seed) in an already open MLflow run: training is the
only interruptible part; Ctrl-C / SIGTERM tags the run ``interrupted`` and ends it KILLED (so
``--resume`` continues it from its last checkpoint); any other error tags it ``failed``, logs the
traceback as ``error.txt``, ends it FAILED and is returned as an outcome, so the rest of the
study goes on. The callers only differ in how they open the run and what they do with the result.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mtlbench.infra import interrupts
from mtlbench.infra.progress import Reporter
from mtlbench.runs.observe import observe_trial, wants_system_metrics
from mtlbench.tracking import (
    CHECKPOINT_DIR_TAG,
    ERROR_TAG,
    HOST_TAG,
    KIND_TAG,
    LR_TAG,
    PARENT_NAME_TAG,
    STATUS_TAG,
    RunKind,
    Status,
    TrackedRun,
    Tracker,
)
from mtlbench.training import checkpoint
from mtlbench.training import fit as fitting
from mtlbench.training.fit import TrialResult, TrialSpec, trial_params

if TYPE_CHECKING:
    import torch

    from mtlbench.config import RunConfig
    from mtlbench.training.prepare import PreparedData


@dataclass(frozen=True)
class PlannedTrial:
    spec: TrialSpec
    run_id: str | None  # an interrupted trial's MLflow run to continue, or None for a new run


@dataclass(frozen=True)
class TrialOutcome:
    label: str
    run_id: str
    status: str  # a Status: finished | diverged | pruned | failed
    message: str
    result: TrialResult | None


def checkpoint_root(cfg: RunConfig) -> Path:
    """The folder that holds one checkpoint folder per trial run."""
    return checkpoint.root_for(cfg.train.checkpoint_dir, cfg.tracking.resolved_uri)


def checkpoint_folder(cfg: RunConfig, run_id: str) -> Path:
    """Where the trial of MLflow run ``run_id`` keeps its checkpoints."""
    return checkpoint_root(cfg) / run_id


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; the platform's processor string elsewhere)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def host_label(device: torch.device) -> str:
    """What a trial's speed depends on, as the tag :data:`HOST_TAG`: the GPU's name, or the CPU
    model and the CPUs this process may use. A study that spans sessions can span machines
    (the same model name ran 8.4x apart, experiments/utkface-cpu.toml); the report says so."""
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_model()} ({cpus} CPUs)"


# Shielded as a whole, training excepted (``interruptible`` below): an interrupt that arrives
# while the run is tagged or closed waits until the run is in a state --resume understands.
@interrupts.shield
def run_trial(
    spec: TrialSpec,
    cfg: RunConfig,
    data: PreparedData,
    device: torch.device,
    run: TrackedRun,
    reporter: Reporter,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrialOutcome:
    """Train ``spec`` in the open MLflow run ``run`` and close the run with its outcome."""
    start = time.perf_counter()
    folder = checkpoint_folder(cfg, run.run_id)
    run.set_tags(
        {CHECKPOINT_DIR_TAG: folder, LR_TAG: repr(float(spec.lr)), HOST_TAG: host_label(device)}
    )
    try:
        # The dataset input and the system-metrics sampler sit outside the interruptible part:
        # their MLflow calls must not be cut by Ctrl-C.
        with (
            observe_trial(
                run.client,
                run.run_id,
                cfg.tracking.resolved_uri,
                data.params,
                system_metrics_on=wants_system_metrics(cfg.tracking.system_metrics, device.type),
            ),
            interrupts.interruptible(),
        ):
            # Through the module, so a test can stand in for fit.
            result = fitting.fit(
                spec,
                cfg,
                data,
                device,
                run=run,
                reporter=reporter,
                on_epoch=on_epoch,
                checkpoint_dir=folder,
            )
    except KeyboardInterrupt:
        run.set_tags({STATUS_TAG: Status.INTERRUPTED})
        run.end("KILLED")
        raise
    except Exception as exc:  # a failed trial must not cost the rest of the study
        message = one_line(exc)
        run.set_tags({STATUS_TAG: Status.FAILED, ERROR_TAG: message})
        run.log_text(traceback.format_exc(), "error.txt")
        run.end("FAILED")
        return TrialOutcome(spec.label, run.run_id, Status.FAILED, message, None)
    # What a trial costs beyond its training steps (model build, validation and test passes,
    # checkpoints, MLflow calls): docs/performance.md tracks it against a 10% budget.
    wall = time.perf_counter() - start
    overhead = {
        "time/trial_s": wall,
        "time/train_s": result.train_seconds,
        "time/overhead_pct": 100 * (wall - result.train_seconds) / max(wall, 1e-9),
    }
    run.log_metrics(overhead, step=max(result.best_epoch, 0))
    run.end("FINISHED")
    return TrialOutcome(spec.label, run.run_id, result.status, result.message, result)


def execute_trial(
    planned: PlannedTrial,
    cfg: RunConfig,
    data: PreparedData,
    device: torch.device,
    tracker: Tracker,
    parent: TrackedRun,
    reporter: Reporter,
) -> TrialOutcome:
    """Run one planned grid trial in its MLflow run (new, or reopened to continue from its
    last checkpoint); see :func:`run_trial`."""
    spec = planned.spec
    if planned.run_id is not None:
        child = TrackedRun(tracker.client, planned.run_id)
        child.reopen()
    else:
        child = tracker.start_run(
            spec.label,
            params=trial_params(spec, cfg, data, device),
            tags={KIND_TAG: RunKind.TRIAL, PARENT_NAME_TAG: cfg.tracking.experiment},
            parent=parent,
        )
    return run_trial(spec, cfg, data, device, child, reporter)


def report_outcome(outcome: TrialOutcome, reporter: Reporter) -> None:
    if outcome.status == Status.FAILED:
        reporter.warn(
            f"{outcome.label}: FAILED ({outcome.message}); traceback in run {outcome.run_id}"
        )
    elif outcome.status != Status.FINISHED:
        reporter.warn(f"{outcome.label}: {outcome.status} ({outcome.message})")


def one_line(exc: BaseException) -> str:
    """An exception as one line of at most 300 characters (for a tag or a console line)."""
    text = " ".join(f"{exc.__class__.__name__}: {exc}".split())
    return text[:300]
