"""`mtlbench run --workers 2`: a grid's trials run in two processes, all land under one parent."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from mtlbench.cli.app import app
from tests.integration.interrupting import interrupt_after_checkpoint


def test_grid_with_two_workers(faces_dir, session_cache, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        "run", "--strategies", "sum,dwa", "--seeds", "0,1", "--workers", "2",
        "--backbone", "tiny", "--epochs", "2", "--data", str(faces_dir),
        "--cache-dir", str(session_cache), "--tracking-uri", uri, "--experiment", "pool",
        "--output", str(tmp_path / "out"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "in 2 worker processes" in result.output
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("pool")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("mtlbench.kind") == "study"]
    trials = [r for r in runs if r.data.tags.get("mtlbench.kind") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(trials) == 4
    assert {(t.data.params["strategy"], t.data.params["seed"]) for t in trials} == {
        ("sum", "0"), ("sum", "1"), ("dwa", "0"), ("dwa", "1"),
    }  # fmt: skip
    for t in trials:
        assert t.info.status == "FINISHED"
        assert t.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert [m.step for m in client.get_metric_history(t.info.run_id, "val/score")] == [0, 1]
        assert "test/age_mae" in t.data.metrics
    assert (tmp_path / "out" / "leaderboard.md").is_file()


@pytest.mark.slow
def test_ctrl_c_stops_grid_workers_cleanly_then_resume_finishes(faces_dir, session_cache, tmp_path):
    """Ctrl-C reaches the parent and its worker processes (one process group): the parent
    stops the workers, every started run ends KILLED (none left RUNNING), the exit is 130
    without a traceback, and --resume completes the grid."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        "run", "--strategies", "sum,dwa", "--seeds", "0,1", "--workers", "2",
        "--backbone", "tiny", "--epochs", "8", "--batch-size", "16", "--data", str(faces_dir),
        "--cache-dir", str(session_cache), "--tracking-uri", uri, "--experiment", "stop",
        "--output", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ckpt"),
    ]  # fmt: skip
    stopped = interrupt_after_checkpoint(args, tmp_path / "ckpt", group=True)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr and "--resume" in stopped.stderr, stopped.stderr
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("stop").experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs), [r.info.status for r in runs]
    assert "interrupted" in {r.data.tags.get("mtlbench.status") for r in runs}

    result = CliRunner().invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    runs = client.search_runs([client.get_experiment_by_name("stop").experiment_id])
    trials = [r for r in runs if r.data.tags.get("mtlbench.kind") == "trial"]
    assert len(trials) == 4 and all(t.info.status == "FINISHED" for t in trials)
