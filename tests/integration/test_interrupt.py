"""Real processes interrupted with SIGINT, SIGTERM and SIGKILL, then resumed with --resume:
the final metrics equal those of an uninterrupted run with the same seed (CPU)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.integration.interrupting import interrupt_after_checkpoint

EPOCHS = "8"


def _cmd(work: Path, faces: Path, cache: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mtlbench", "run", "--strategies", "uncertainty",
        "--backbone", "tiny", "--epochs", EPOCHS, "--batch-size", "16",
        "--data", str(faces), "--cache-dir", str(cache),
        "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--experiment", "kill",
        "--output", str(work / "out"), "--checkpoint-dir", str(work / "ckpt"), *extra,
    ]  # fmt: skip


def _trial(work: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("kill")
    runs = client.search_runs([exp.experiment_id])
    trials = [r for r in runs if r.data.tags.get("mtlbench.kind") == "trial"]
    parents = [r for r in runs if r.data.tags.get("mtlbench.kind") == "study"]
    return client, trials, parents


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def uninterrupted(faces_dir, session_cache, tmp_path_factory):
    work = tmp_path_factory.mktemp("straight")
    proc = subprocess.run(
        _cmd(work, faces_dir, session_cache), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    client, trials, _ = _trial(work)
    return client, trials[0]


def _start_and_kill(work: Path, faces: Path, cache: Path, sig: int) -> subprocess.CompletedProcess:
    return interrupt_after_checkpoint(_cmd(work, faces, cache)[3:], work / "ckpt", sig)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["int", "kill"])
def test_kill_then_resume_matches_uninterrupted(
    uninterrupted, faces_dir, session_cache, tmp_path, sig
):
    ref_client, ref = uninterrupted
    killed = _start_and_kill(tmp_path, faces_dir, session_cache, sig)
    client, trials, parents = _trial(tmp_path)
    assert len(trials) == 1
    if sig == signal.SIGKILL:
        assert killed.returncode == -signal.SIGKILL
        assert trials[0].info.status == "RUNNING"  # nobody could mark it
    else:
        assert killed.returncode == 130, killed.stderr
        assert "Traceback" not in killed.stderr
        assert "--resume" in killed.stderr
        assert trials[0].info.status == "KILLED"
        assert parents[0].info.status == "KILLED"
    assert list((tmp_path / "ckpt").glob("*/last.json")), "the last checkpoint is kept"

    resumed = subprocess.run(
        _cmd(tmp_path, faces_dir, session_cache, "--resume"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming study" in resumed.stderr
    client, trials, parents = _trial(tmp_path)
    assert len(trials) == 1 and len(parents) == 1, "the same MLflow runs are reused"
    run = trials[0]
    assert run.info.status == "FINISHED" and parents[0].info.status == "FINISHED"
    for key in ("test/age_mae", "test/gender_acc", "test/race_acc"):
        assert run.data.metrics[key] == ref.data.metrics[key], key
    assert run.data.params["best.epoch"] == ref.data.params["best.epoch"]
    for key in ("val/score", "train/loss_total", "weight/age"):
        got = _history(client, run.info.run_id, key)
        assert got == _history(ref_client, ref.info.run_id, key), key
        assert [s for s, _ in got] == list(range(int(EPOCHS))), "each epoch logged once"
    assert not list((tmp_path / "ckpt").glob("*/last.json")), "finished trials clean up"


@pytest.mark.slow
def test_sigterm_is_a_clean_interrupt(faces_dir, session_cache, tmp_path):
    killed = _start_and_kill(tmp_path, faces_dir, session_cache, signal.SIGTERM)
    assert killed.returncode == 130, killed.stderr
    assert "Traceback" not in killed.stderr and "--resume" in killed.stderr
    _, trials, parents = _trial(tmp_path)
    assert trials[0].info.status == "KILLED" and parents[0].info.status == "KILLED"
    assert trials[0].data.tags["mtlbench.status"] == "interrupted"


def test_resume_with_nothing_to_resume_starts_fresh(faces_dir, session_cache, tmp_path):
    from typer.testing import CliRunner

    from mtlbench.cli.app import app

    args = _cmd(tmp_path, faces_dir, session_cache, "--resume")[3:]
    args[args.index("--epochs") + 1] = "1"
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "nothing to resume" in result.output


def test_an_interrupt_while_a_trial_run_is_set_up_leaves_it_killed(
    faces_dir, session_cache, tmp_path, monkeypatch
):
    """Ctrl-C between creating a trial's MLflow run and starting to train used to leave that
    run RUNNING (found by interrupting real runs at random moments); it must end KILLED."""
    from typer.testing import CliRunner

    from mtlbench.cli.app import app
    from mtlbench.training import checkpoint

    real_root_for = checkpoint.root_for

    def interrupted_root_for(*args, **kwargs):  # called after the run exists, before training
        signal.raise_signal(signal.SIGINT)
        return real_root_for(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "root_for", interrupted_root_for)
    args = _cmd(tmp_path, faces_dir, session_cache)[3:]
    args[args.index("--epochs") + 1] = "1"
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130, result.output
    _, trials, parents = _trial(tmp_path)
    assert [t.info.status for t in trials] == ["KILLED"]
    assert trials[0].data.tags["mtlbench.status"] == "interrupted"
    assert parents[0].info.status == "KILLED"
