"""The documented third-party plug-in (docs/examples/mtlbench-shapes) installed with pip and
found through the ``mtlbench.datasets`` entry-point group: listed, and trained end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mtlbench.data import registry

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "mtlbench-shapes"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """pip-installs a copy of the example into a private target folder (offline: no build
    isolation, no dependencies), so neither the repository nor the venv is touched."""
    work = tmp_path_factory.mktemp("plugin")
    source, site = work / "src", work / "site"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run(
        [*pip, "--target", str(site), str(source)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert list(site.glob("mtlbench_shapes-*.dist-info/entry_points.txt"))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return work, {**os.environ, "PYTHONPATH": path, "COLUMNS": "200"}


def _mtlbench(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "mtlbench", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_not_there_without_the_package() -> None:
    assert "shapes" not in registry.available()


@pytest.mark.slow
def test_listed_by_mtlbench_datasets(installed) -> None:
    _, env = installed
    done = _mtlbench(env, "datasets")
    assert done.returncode == 0, done.stderr
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in done.stdout.splitlines()]
    mine = [r for r in rows if len(r) == 7 and r[1] in ("area", "filled", "colour")]
    assert [r[:6] for r in mine] == [
        ["shapes", "area", "regression", "1", "area_mae", "lower is better"],
        ["", "filled", "binary", "1", "filled_acc", "higher is better"],
        ["", "colour", "multiclass", "3", "colour_acc", "higher is better"],
    ]


@pytest.mark.slow
def test_a_study_on_the_plugin_runs_end_to_end(installed) -> None:
    work, env = installed
    uri = f"sqlite:///{work / 'mlflow.db'}"
    done = _mtlbench(
        env, "run", "--dataset", "shapes", "--data", "240", "--strategies", "sum,mgda",
        "--backbone", "tiny", "--epochs", "2", "--batch-size", "32", "--lrs", "3e-3",
        "--cache-dir", str(work / "cache"), "--tracking-uri", uri, "--experiment", "shapes",
        "--output", str(work / "out"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("shapes")
    runs = client.search_runs([exp.experiment_id], "tags.`mtlbench.kind` = 'trial'")
    assert sorted(r.data.params["strategy"] for r in runs) == ["mgda", "sum"]
    for run in runs:
        m = run.data.metrics
        assert run.data.params["dataset"] == "shapes" and run.data.params["n_train"] == "168"
        # Real-valued targets: areas are fractions of the image, so is their MAE.
        assert 0 < m["test/area_mae"] < 0.25 and 0 < m["reference/test_area_mae"] < 0.25
        assert 0 <= m["test/filled_acc"] <= 1 and 0 <= m["test/colour_acc"] <= 1
    board = (work / "out" / "leaderboard.md").read_text()
    assert "area MAE ↓" in board and "filled acc (%) ↑" in board and "colour acc (%) ↑" in board
    assert "| constant predictor |" in board
