"""``--workers K`` for a grid: K local processes run the planned trials concurrently.

Small models leave cores (or a large GPU) idle, so several trials at once raise a study's
throughput. Each worker process decodes nothing (the data cache is already built and is
memory-mapped), owns its own MLflow client, and gets ``torch threads // K`` intra-op threads
(two processes each using every core thrash); with ``--devices 0,1`` worker i trains on
``cuda:<devices[i mod len]>``. The parent hands out trials one at a time, so a slow trial does
not hold others back, and yields each outcome as it arrives.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mtlbench.infra import interrupts
from mtlbench.infra.progress import NullReporter, Reporter

if TYPE_CHECKING:
    import torch

    from mtlbench.config import RunConfig
    from mtlbench.runs.trial import PlannedTrial, TrialOutcome
    from mtlbench.tracking import TrackedRun, Tracker
    from mtlbench.training.prepare import PreparedData


@dataclass
class _WorkerState:
    cfg: RunConfig
    data: PreparedData
    device: torch.device
    tracker: Tracker
    parent: TrackedRun


_STATE: _WorkerState | None = None
_BUSY = False  # this worker is running a trial


def install_worker_signals() -> None:
    """The parent handles Ctrl-C for everyone: it stops the workers with SIGTERM. A busy
    worker takes the trial's clean path (its run marked KILLED, its checkpoint kept). An idle
    one, blocked in the executor's queue read for a trial that will not come (every worker
    once the queue runs dry, or after ``experiments/utkface-cpu.sh stop``), leaves at once:
    an interrupt raised in that read escaped as a worker traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    interrupts.install((signal.SIGTERM,))
    trial_handler = signal.getsignal(signal.SIGTERM)
    assert callable(trial_handler)

    def on_sigterm(signum: int, frame: Any) -> None:
        if not _BUSY:
            os._exit(130)
        trial_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def _init_worker(
    cfg: RunConfig, parent_run_id: str, threads: int, devices: Sequence[str], slots: Any
) -> None:
    # A SIGTERM during the set-up finds the worker idle: it leaves quietly (an exception here
    # would make the executor log "Exception in initializer" with a traceback).
    install_worker_signals()
    _set_up(cfg, parent_run_id, threads, devices, slots)


def _set_up(
    cfg: RunConfig, parent_run_id: str, threads: int, devices: Sequence[str], slots: Any
) -> None:
    import torch

    # What unpickling a trial imports (the trial runner, the trainer, every strategy) is
    # imported here, where an interrupt leaves quietly: imported later by the executor's
    # queue read, a SIGTERM during the import (seconds on a slow host) escaped as a worker
    # traceback (seen in CI on a slow 2-core host).
    import mtlbench.runs.trial  # noqa: F401
    from mtlbench.tracking import TrackedRun, Tracker
    from mtlbench.training.prepare import prepare_data, resolve_device

    global _STATE
    torch.set_num_threads(threads)
    index = slots.get()
    spec = f"cuda:{devices[index % len(devices)]}" if devices else cfg.train.device
    device = resolve_device(spec)
    data = prepare_data(cfg.data, device)
    tracker = Tracker(cfg.tracking.resolved_uri, cfg.tracking.experiment)
    _STATE = _WorkerState(cfg, data, device, tracker, TrackedRun(tracker.client, parent_run_id))


def _run_one(planned: PlannedTrial) -> TrialOutcome:
    from mtlbench.runs.trial import execute_trial

    global _BUSY
    assert _STATE is not None, "worker not initialised"
    s = _STATE
    _BUSY = True
    try:
        return execute_trial(planned, s.cfg, s.data, s.device, s.tracker, s.parent, NullReporter())
    finally:
        _BUSY = False


def run_pool(
    cfg: RunConfig, parent_run_id: str, plan: Sequence[PlannedTrial], reporter: Reporter
) -> Iterator[TrialOutcome]:
    import torch

    n = min(cfg.search.workers, len(plan))
    threads = max(1, torch.get_num_threads() // n)
    devices = cfg.search.devices
    where = f"GPUs {','.join(devices)}" if devices else f"{threads} CPU thread(s) each"
    reporter.info(f"running {len(plan)} trials in {n} worker processes ({where})")
    # spawn, not fork: the parent holds threads (torch, MLflow's SQLAlchemy pool).
    ctx = mp.get_context("spawn")
    slots = ctx.Queue()
    for i in range(n):
        slots.put(i)
    pool = ProcessPoolExecutor(
        max_workers=n,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(cfg, parent_run_id, threads, devices, slots),
    )
    pending: set[Future[TrialOutcome]] = set()
    queue = list(plan)
    try:
        while queue or pending:
            while queue and len(pending) < n:
                pending.add(pool.submit(_run_one, queue.pop(0)))
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Interrupt every worker (each marks its trial's run KILLED and keeps its checkpoint)."""
    processes = list(getattr(pool, "_processes", {}).values())
    for proc in processes:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
    for proc in processes:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
    pool.shutdown(wait=False, cancel_futures=True)
