"""`mtlbench toy`: the figure, its caption and what reaches MLflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from mtlbench.cli import app
from mtlbench.toy.pareto import distance
from mtlbench.toy.plot import caption, figure_size, format_distance, plot_toy
from mtlbench.toy.run import ToyConfig, ToyResult, run_toy, toy_study
from mtlbench.toy.track import N_LOGGED_STEPS


@pytest.fixture(scope="module")
def small_result() -> ToyResult:
    return run_toy(ToyConfig(("sum", "mgda", "pcgrad"), steps=120))


def test_the_figure_is_a_small_png_with_one_panel_per_strategy(
    small_result: ToyResult, tmp_path: Path
) -> None:
    path = plot_toy(small_result, tmp_path / "fig" / "toy.png")
    width, height = figure_size(path)
    # Three panels side by side at 2.9 in and 72 dpi; one row of panels plus the caption.
    assert abs(width - 3 * 2.9 * 72) <= 1
    assert 3.0 * 72 < height < 5.0 * 72
    assert path.stat().st_size < 200_000
    one = ToyResult(small_result.config, small_result.setting,
                    {"sum": small_result.trajectories["sum"]})  # fmt: skip
    assert abs(figure_size(plot_toy(one, tmp_path / "one.png"))[0] - 2.9 * 72) <= 1
    with pytest.raises(ValueError, match="not a PNG"):
        figure_size(Path(__file__))


def test_the_caption_gives_each_strategys_final_distances(small_result: ToyResult) -> None:
    text = caption(small_result)
    assert "(-8.5, 7.5) / (-8.5, -5) / (9, 9)" in text
    assert "120 Adam steps" in text
    flat = " ".join(text.split())
    for name, trajs in small_result.trajectories.items():
        # Independent of the run's own bookkeeping: the distance of the last point.
        values = [format_distance(float(distance(t.points[-1]))) for t in trajs]
        assert f"{name}: {' / '.join(values)}" in flat
    assert format_distance(float("nan")) == "failed"
    assert format_distance(3.2e-5) == "3e-05"


def test_toy_study_logs_params_distances_and_the_figure(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = ToyConfig(("sum", "mgda"), setting="nash-mtl", steps=60)
    result, run_id = toy_study(cfg, tmp_path / "toy.png", tracking_uri=uri, experiment="toy-x")
    assert run_id is not None
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["setting"] == "nash-mtl"
    assert run.data.params["steps"] == "60"
    assert run.data.params["strategies"] == "sum,mgda"
    assert run.data.params["scale_f1"] == "0.1"
    assert run.data.tags["mtlbench.kind"] == "toy"
    starts = ["-8.5_7.5", "0_0", "9_9", "-7.5_-0.5", "9_-1"]
    expected = {f"toy/{s}/distance_{p}" for s in ("sum", "mgda") for p in starts}
    assert set(run.data.metrics) == expected
    for strategy, trajs in result.trajectories.items():
        for traj, label in zip(trajs, starts, strict=True):
            history = client.get_metric_history(run_id, f"toy/{strategy}/distance_{label}")
            steps = sorted(m.step for m in history)
            assert steps[0] == 0 and steps[-1] == 60 and len(steps) == N_LOGGED_STEPS
            by_step = {m.step: m.value for m in history}
            assert by_step[60] == pytest.approx(float(distance(traj.points[60])), rel=1e-12)
            start = np.array([traj.start.x1, traj.start.x2])
            assert by_step[0] == pytest.approx(float(distance(start)), rel=1e-12)
    artifacts = [a.path for a in client.list_artifacts(run_id)]
    assert artifacts == ["toy.png"]


def test_cli_writes_the_figure_prints_the_caption_and_logs(tmp_path: Path) -> None:
    out = tmp_path / "toy.png"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["toy", "--strategies", "mgda,cagrad", "--steps", "30", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--tracking-uri", uri, "--experiment", "toy-cli"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = " ".join(result.output.split())
    assert "mgda: " in text and "cagrad: " in text and "MLflow run" in text
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("toy-cli")
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id])
    assert "toy/cagrad/distance_9_9" in run.data.metrics


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "toy.jpg"], "must end in .png"),
        (["--strategies", "nope"], "valid strategies"),
        (["--setting", "famo"], "valid settings: cagrad, nash-mtl"),
        (["--steps", "0"], "steps must be >= 1"),
    ],
)
def test_cli_bad_options_fail_with_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["toy", "--steps", "2", *args], catch_exceptions=False)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_toy_help_does_not_import_torch_or_mlflow() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mtlbench", "toy", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert "--strategies" in proc.stdout and "all-gradient" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    for heavy in ("torch", "mlflow", "matplotlib"):
        assert heavy not in imported, f"toy --help imported {heavy}"
