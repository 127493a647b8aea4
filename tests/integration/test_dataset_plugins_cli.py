"""End to end with a dataset other than UTKFace: ``mtlbench run --dataset multi-digits-4``
(T = 4) through MLflow, the report, the figures and ``mtlbench predict``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from mtlbench.cli.app import app

QUADRANTS = ("top_left", "top_right", "bottom_left", "bottom_right")


@pytest.fixture(scope="module")
def study(session_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("digits4")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    args = [
        "run", "--dataset", "multi-digits-4", "--strategies", "sum,mgda,uncertainty",
        "--backbone", "lenet", "--epochs", "1", "--max-samples", "300", "--batch-size", "32",
        "--lrs", "3e-3", "--cache-dir", str(session_cache), "--tracking-uri", uri,
        "--experiment", "d4", "--output", str(work / "out"), "--log-model", "best",
        "--register-model", "digits4",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return work, uri, result.output


def _trials(uri: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("d4")
    return client.search_runs([exp.experiment_id], "tags.`mtlbench.kind` = 'trial'")


def test_metric_names_and_params_come_from_the_declared_tasks(study) -> None:
    _, uri, output = study
    runs = _trials(uri)
    assert sorted(r.data.params["strategy"] for r in runs) == ["mgda", "sum", "uncertainty"]
    for run in runs:
        metrics = run.data.metrics
        assert run.data.params["dataset"] == "multi-digits-4"
        assert run.data.params["tasks"] == ",".join(QUADRANTS)
        for task in QUADRANTS:
            assert 0 <= metrics[f"test/{task}_acc"] <= 1 and f"val/{task}_acc" in metrics
            assert f"weight/{task}" in metrics and f"train/loss_{task}" in metrics
            assert 0 <= metrics[f"reference/test_{task}_acc"] <= 1
        assert not any("age" in k or "race" in k for k in metrics)
    # The console summary has one column per task.
    assert "top left acc" in output and "bottom right acc" in output


def test_report_columns_constant_row_and_figures(study) -> None:
    work, uri, _ = study
    out = work / "out"
    board = (out / "leaderboard.md").read_text()
    for task in QUADRANTS:
        assert f"{task.replace('_', ' ')} acc (%) ↑" in board
    assert "HydraNet (top_left, top_right, bottom_left, bottom_right)" in board
    assert "One dataset, four tasks." in board and "age MAE" not in board and "race" not in board
    const = next(line for line in board.splitlines() if "| constant predictor |" in line)
    runs = _trials(uri)
    expected = [100 * runs[0].data.metrics[f"reference/test_{t}_acc"] for t in QUADRANTS]
    cells = [float(c) for c in const.split("|")[5:9]]
    assert cells == pytest.approx(expected, abs=0.051)
    for name in ("delta_m", "pareto", "curves", "weights", "lr_sensitivity"):
        assert (out / f"{name}.png").stat().st_size > 10_000, name
    assert "constant predictor" in (out / "report.html").read_text()
    tidy = pd.read_csv(out / "trials.csv")
    assert set(tidy["strategy"]) == {"sum", "mgda", "uncertainty"}


def test_predict_returns_a_digit_per_quadrant(study) -> None:
    work, uri, _ = study
    images = work / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(images / "d.png")
    args = ["predict", str(images), "--model", "models:/digits4/1", "--tracking-uri", uri]
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    (pred,) = json.loads(result.stdout)["predictions"]
    for task in QUADRANTS:
        assert pred[task] in [str(d) for d in range(10)] and 0.1 <= pred[f"{task}_p"] <= 1.0
