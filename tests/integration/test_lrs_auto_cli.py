"""`mtlbench run --static-sweep N --lrs auto` on tiny generated data, then `--resume`: what
MLflow stored (the interior static specs, the widened grid) and what the report says."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from mtlbench.cli.app import app
from mtlbench.runs import lr_auto


def _args(faces_dir: Path, cache: Path, work: Path, *extra: str) -> list[str]:
    return [
        "run", "--strategies", "sum", "--static-sweep", "4", "--lrs", "auto",
        "--backbone", "tiny", "--epochs", "1", "--batch-size", "32",
        "--data", str(faces_dir), "--cache-dir", str(cache),
        "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--experiment", "auto",
        "--output", str(work / "out"), "--log-model", "none", *extra,
    ]  # fmt: skip


def _trials(work: Path) -> list:
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("auto")
    return client.search_runs([exp.experiment_id], "tags.`mtlbench.kind` = 'trial'")


@pytest.mark.slow
def test_static_sweep_and_auto_lrs_then_resume(faces_dir, session_cache, tmp_path):
    result = CliRunner().invoke(app, _args(faces_dir, session_cache, tmp_path))
    assert result.exit_code == 0, result.output
    runs = _trials(tmp_path)
    specs = {r.data.params["strategy"] for r in runs}
    # 1/4 lattice, interior: (2,1,1) in every order, scaled to sum 3.
    assert specs == {"sum", "static:1.5,0.75,0.75", "static:0.75,1.5,0.75", "static:0.75,0.75,1.5"}
    lrs = sorted({float(r.data.params["lr"]) for r in runs})
    assert set(lr_auto.START) <= set(lrs)
    # Every widening adds lr / 3 below or lr * 3 above (3 significant digits; the start grid
    # steps by 3 and 3.33), at most 3 times.
    assert all(2.99 < b / a < 3.34 for a, b in itertools.pairwise(lrs)), lrs
    rounds = output_rounds(result.output)
    # One epoch favours the largest lr, so the start grid's top edge is chosen and widens.
    assert 1 <= rounds <= lr_auto.MAX_ROUNDS
    assert len(lr_auto.START) + rounds <= len(lrs) <= len(lr_auto.START) + 2 * rounds
    # Every spec ran every lr of the final grid with its one seed, once.
    keys = [(r.data.params["strategy"], float(r.data.params["lr"])) for r in runs]
    assert sorted(keys) == sorted((s, lr) for s in specs for lr in lrs)
    board = pd.read_csv(tmp_path / "out" / "leaderboard.csv").set_index("strategy")
    md = (tmp_path / "out" / "leaderboard.md").read_text()
    for spec in specs:
        chosen = board.loc[spec, "best_lr"]
        edge = "low" if chosen == min(lrs) else "high" if chosen == max(lrs) else None
        if edge is not None:  # still at an edge: only once the cap stopped the widening
            assert f"{spec} ({edge})" in md
            assert rounds == lr_auto.MAX_ROUNDS
    best = [s for s in board.index if s.startswith("best static (")]
    assert len(best) == 1 and board.loc[best[0], "kind"] == "method"
    assert "family “adaptive vs best static”" in md or "No method was tested" in md

    # --resume after a kill: the finished trials of every round are kept, a lost one re-runs.
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = runs[0].data.tags["mlflow.parentRunId"]
    client.set_terminated(parent, "KILLED")
    lost = next(r for r in runs if float(r.data.params["lr"]) not in lr_auto.START)
    client.delete_run(lost.info.run_id)
    again = CliRunner().invoke(app, _args(faces_dir, session_cache, tmp_path, "--resume"))
    assert again.exit_code == 0, again.output
    assert f"resuming study {parent}" in again.output
    after = _trials(tmp_path)
    assert len(after) == len(runs)
    assert sorted((r.data.params["strategy"], float(r.data.params["lr"])) for r in after) == sorted(
        keys
    )
    assert {r.data.tags["mlflow.parentRunId"] for r in after} == {parent}


def output_rounds(output: str) -> int:
    return output.count("--lrs auto: a chosen lr is at an edge")
