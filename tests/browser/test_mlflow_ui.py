"""The real MLflow UI, opened where `mtlbench ui` says, in headless chromium.

A tiny study (two strategies, two epochs, synthetic faces) fills a fresh store; `mtlbench ui`
serves it on a free loopback port and prints the address of the experiment's runs table. The
browser must land on training runs (not MLflow's GenAI overview), show the dataset each trial
trained on, and a run's metric tab must open on the per-epoch curves. Screenshots are kept
(``$MTLBENCH_SCREENSHOT_DIR`` under ``nox -s browser``) so a person can look at what was checked.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import Chromium

pytestmark = pytest.mark.browser

_URL = re.compile(r"https?://127\.0\.0\.1:\d+/#/experiments/\S+")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ui-store")
    cmd = [
        sys.executable, "-m", "mtlbench", "run",
        "--data", "synthetic", "--max-samples", "240", "--epochs", "3",
        "--backbone", "tiny", "--strategies", "sum,uncertainty",
        "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--experiment", "ui-check", "--output", str(root / "out"),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return root


@pytest.fixture(scope="module")
def ui(store: Path) -> Iterator[str]:
    """Start `mtlbench ui` on the store; yield the runs-table address it printed."""
    port = _free_port()
    log = store / "ui.log"
    with log.open("w") as out:
        cmd = [
            sys.executable, "-m", "mtlbench", "ui", "--port", str(port),
            "--tracking-uri", f"sqlite:///{store / 'mlflow.db'}",
            "--experiment", "ui-check", "--no-browser",
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd,
            cwd=store,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, f"mtlbench ui exited: {log.read_text()}"
                time.sleep(0.5)
        else:
            pytest.fail(f"MLflow UI did not answer in 120 s: {log.read_text()}")
        found = _URL.search(log.read_text())
        assert found, f"mtlbench ui printed no experiment address: {log.read_text()}"
        yield found.group(0)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(chromium: Chromium) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium.binary
    for arg in ("--headless=new", "--no-sandbox", "--window-size=1600,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(chromium.driver), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _page_text(driver: object, url: str, wait_for: str, timeout: float = 90.0) -> str:
    """Open ``url`` and return the page's text once ``wait_for`` shows (the UI renders late)."""
    driver.get(url)  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = driver.find_element("tag name", "body").text  # type: ignore[attr-defined]
        if wait_for in text:
            time.sleep(1.0)  # let the rest of the table settle
            return str(driver.find_element("tag name", "body").text)  # type: ignore[attr-defined]
        time.sleep(0.5)
    pytest.fail(f"{wait_for!r} never appeared on {url}; the page said: {text[:800]}")


def test_ui_lands_on_the_training_runs(ui: str, browser: object, screenshot_dir: Path) -> None:
    text = _page_text(browser, ui, "grid sum,uncertainty")
    # The GenAI overview's panels must not be what a person sees first.
    for genai in ("Token Usage", "Detect Issues", "Latency"):
        assert genai not in text
    # The parent run, its two children folded under it, and the data the study used.
    assert "Run Name" in text and "Dataset" in text and "3 matching runs" in text
    assert text.count("synthetic") == 1, text
    # Unfold the parent: each child shows the dataset it trained on.
    browser.find_element(  # type: ignore[attr-defined]
        "css selector", "button[data-component-id*='runnamecellrenderer']"
    ).click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = browser.find_element("tag name", "body").text  # type: ignore[attr-defined]
        if text.count("synthetic") >= 3:
            break
        time.sleep(0.5)
    browser.save_screenshot(str(screenshot_dir / "mlflow-runs.png"))  # type: ignore[attr-defined]
    assert text.count("synthetic") == 3, text
    for child in ("sum", "uncertainty"):
        assert any(line.startswith(child) for line in text.splitlines()), text


def test_run_page_opens_on_the_epoch_curves(
    ui: str, store: Path, browser: object, screenshot_dir: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ui-check")
    assert experiment is not None
    children = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if "mlflow.parentRunId" in r.data.tags
    ]
    assert len(children) == 2
    base = ui.split("#")[0]
    url = (
        f"{base}#/experiments/{experiment.experiment_id}/runs/{children[0].info.run_id}"
        "/model-metrics?workflowType=machine_learning"
    )
    text = _page_text(browser, url, "Add chart")
    browser.save_screenshot(str(screenshot_dir / "mlflow-run.png"))  # type: ignore[attr-defined]
    sections = re.findall(r"^(\w+)\n\(\d+\)$", text, flags=re.MULTILINE)
    assert sections, text[:800]
    # MLflow sorts the sections by prefix. The summary values are params, so no best_val
    # section of one-dot charts comes first; test/* (one value each, the contract's final
    # metrics) is the only one-point section; strategy/* (per-epoch diagnostics such as
    # weight_move) are curves too.
    assert sections == sorted(sections), sections
    assert "best_val" not in sections and {"train", "val", "weight"} <= set(sections), sections
    # reference/* (each task's constant predictor on test, one point) sorts before train too.
    assert set(sections[: sections.index("train")]) <= {
        "reference",
        "strategy",
        "system",
        "test",
        "throughput",
        "time",
    }
