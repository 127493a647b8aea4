"""`mtlbench run --workers 2`: a grid's trials run in two processes, all land under one parent."""

from __future__ import annotations

from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from mtlbench.cli import app


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
