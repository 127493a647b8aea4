"""`mtlbench ui` serves the MLflow UI on 127.0.0.1 for the store (started and stopped here)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_ui_serves_the_store_on_localhost(tmp_path):
    from mtlbench.tracking import Tracker

    port = _free_port()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = Tracker(uri, "seen").experiment_id
    log = tmp_path / "ui.log"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mtlbench",
            "ui",
            "--port",
            str(port),
            "--tracking-uri",
            uri,
            "--experiment",
            "seen",
            "--no-browser",
        ],
        cwd=tmp_path,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so the whole server process group can be stopped
    )
    try:
        deadline = time.monotonic() + 90
        body = b""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    body = r.read()
                    break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"mtlbench ui exited early: {log.read_text()}")
                time.sleep(0.5)
        assert body.strip() == b"OK"
        # The UI's API answers for the store we pointed it at.
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=5",
            timeout=5,
        ) as r:
            assert b"Default" in r.read()
        # It printed the experiment's runs table in MLflow's model-training view.
        expected = f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs"
        assert f"{expected}?workflowType=machine_learning" in log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
