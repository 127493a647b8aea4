"""Start ``mtlbench`` in a real process, wait until a trial has saved an epoch checkpoint (so the
signal lands mid-study), send a signal, and collect the exit code and output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def interrupt_after_checkpoint(
    args: Sequence[str], checkpoints: Path, sig: int = signal.SIGINT, group: bool = False
) -> subprocess.CompletedProcess[str]:
    """``group=True`` runs it in its own process group and signals the whole group, as Ctrl-C
    in a terminal does (workers included); otherwise only the main process gets ``sig``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtlbench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
    )
    try:
        deadline = time.monotonic() + 240
        while not list(checkpoints.glob("*/last.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            (os.killpg if group else os.kill)(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
