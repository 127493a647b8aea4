"""A pool worker's SIGTERM: idle workers leave quietly, busy ones take the trial's clean path."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from mtlbench.runs import pool

    pool.install_worker_signals()
    pool._BUSY = sys.argv[1] == "busy"
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        print("signal ignored")
    except KeyboardInterrupt:
        print("trial interrupted")
        sys.exit(3)
    """
)


@pytest.mark.parametrize(("state", "code", "out"), [("idle", 130, ""), ("busy", 3, "trial")])
def test_sigterm_in_a_worker(state: str, code: int, out: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, state], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == code, done.stderr
    assert done.stdout.strip().startswith(out) if out else done.stdout == ""
    assert "Traceback" not in done.stderr
    # Ctrl-C reaches only the parent, which stops the workers itself.
    ignored = SCRIPT.replace("signal.SIGTERM)", "signal.SIGINT)").replace("5)", "0.2)")
    done = subprocess.run(
        [sys.executable, "-c", ignored, state], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "signal ignored", done.stderr
