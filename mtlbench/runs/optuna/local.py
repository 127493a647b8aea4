"""``--workers K``: K local ``mtlbench worker`` processes on one study, watched until done.

Each process is an ordinary worker (the same command another machine runs), so the study's
storage is the only thing they share. With ``--devices 0,1`` worker i runs on
``cuda:<devices[i mod len]>``. The CPU threads are split: each worker gets ``torch threads // K``
intra-op threads (two processes each using every core thrash).
The storage URL reaches the workers through the environment, not their command line, so a
password in it does not show in ``ps``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mtlbench.infra import interrupts
from mtlbench.infra.errors import UserError
from mtlbench.infra.progress import Reporter

if TYPE_CHECKING:
    import optuna

STORAGE_ENV = "MTLBENCH_OPTUNA_STORAGE"
POLL_S = 1.0
STOP_GRACE_S = 30.0


def worker_commands(
    study_name: str, n_workers: int, devices: Sequence[str], threads_total: int
) -> list[list[str]]:
    threads = max(1, threads_total // n_workers)
    commands = []
    for i in range(n_workers):
        cmd = [sys.executable, "-m", "mtlbench", "worker", "--study-name", study_name]
        cmd += ["--worker-index", str(i), "--threads", str(threads), "--quiet"]
        if devices:
            cmd += ["--device", f"cuda:{devices[i % len(devices)]}"]
        commands.append(cmd)
    return commands


def run_local_workers(
    study: optuna.Study,
    study_name: str,
    storage_url: str,
    n_workers: int,
    devices: Sequence[str],
    reporter: Reporter,
) -> None:
    import torch

    from mtlbench.runs.optuna.context import target
    from mtlbench.runs.optuna.storage import count

    env = {**os.environ, STORAGE_ENV: storage_url}
    commands = worker_commands(study_name, n_workers, devices, torch.get_num_threads())
    where = f"GPUs {','.join(devices)}" if devices else f"{torch.get_num_threads()} CPU threads"
    reporter.info(f"starting {n_workers} local workers on {where}")
    procs = [subprocess.Popen(cmd, env=env) for cmd in commands]
    shown = count(study).finished
    try:
        # Ctrl-C stops the wait, never a storage read (which would keep SQLite locked while
        # the workers mark their trials).
        with (
            interrupts.shielded(),
            reporter.progress(f"study {study_name}", total=target(study)) as bar,
        ):
            bar.advance(shown)
            while any(p.poll() is None for p in procs):
                with interrupts.interruptible(), contextlib.suppress(subprocess.TimeoutExpired):
                    next(p for p in procs if p.poll() is None).wait(timeout=POLL_S)
                finished = count(study).finished
                bar.advance(max(0, finished - shown))
                shown = max(shown, finished)
    except BaseException:
        _stop(procs)
        raise
    bad = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
    if bad and count(study).finished < target(study):
        codes = ", ".join(f"worker {i}: exit code {rc}" for i, rc in bad)
        raise UserError(
            f"local workers stopped before the study was complete ({codes}); their messages "
            "are above; re-run the same command to continue the study"
        )


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Ctrl-C reaches the workers too (same process group); give them time to mark their
    trials, then make sure none outlives this process."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
