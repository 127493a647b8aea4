"""Several processes on one Optuna study: concurrent workers, and a worker killed with SIGKILL.

``check_two_workers`` is shared with ``tests/postgres`` (the same check against PostgreSQL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from mtlbench.cli.app import app
from tests.integration.interrupting import interrupt_after_checkpoint
from tests.integration.test_optuna_study import (
    FINISHED,
    finished_param_sets,
    load,
    mlflow_runs,
    optuna_args,
)

N_TRIALS = 10  # enough for both workers to get trials despite uneven start-up (~3 s apart)


def check_two_workers(
    work: Path, faces: Path, cache: Path, storage: str | None = None
) -> optuna.Study:
    """``run --workers 2`` on one storage: exactly N finished trials, none trained twice, all
    under one MLflow parent run, both workers busy."""
    extra = ["--storage", storage] if storage else []
    args = optuna_args(
        work, faces, cache, "--strategies", "sum,dwa,uncertainty", "--n-trials", str(N_TRIALS),
        "--study-name", "two", "--workers", "2", "--epochs", "1", *extra,
    )  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    study = optuna.load_study(
        study_name="two", storage=storage or f"sqlite:///{work / 'optuna.db'}"
    )
    assert len(study.get_trials(states=FINISHED)) == N_TRIALS
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    sets = finished_param_sets(study)
    assert len(set(sets)) == len(sets), "a parameter set was trained twice"
    _, parents, children = mlflow_runs(work, "opt", "two")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    finished_children = [c for c in children if c.info.status == "FINISHED"]
    assert len(finished_children) == N_TRIALS
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    numbers = [c.data.tags["mtlbench.trial_number"] for c in finished_children]
    assert len(set(numbers)) == N_TRIALS
    workers = {c.data.tags["mtlbench.worker"] for c in finished_children}
    assert len(workers) == 2, workers
    return study


def test_two_local_workers_share_one_sqlite_study(faces_dir, session_cache, tmp_path):
    check_two_workers(tmp_path, faces_dir, session_cache)


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited with {proc.returncode} before {what}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_ctrl_c_stops_coordinator_and_workers_cleanly_then_the_study_continues(
    faces_dir, session_cache, tmp_path
):
    """Ctrl-C in a terminal reaches the whole process group. The coordinator and both workers
    stop with exit code 130 and no traceback, no trial or run is left RUNNING (a KeyboardInterrupt
    inside a SQLite call used to leave the store locked and runs unmarked), and the same
    command then completes the study."""
    args = optuna_args(
        tmp_path, faces_dir, session_cache, "--strategies", "sum,dwa", "--n-trials", "4",
        "--study-name", "stop", "--workers", "2", "--epochs", "6",
        "--checkpoint-dir", str(tmp_path / "ckpt"),
    )  # fmt: skip
    stopped = interrupt_after_checkpoint(args, tmp_path / "ckpt", group=True)
    assert stopped.returncode == 130, stopped.stderr
    assert "Traceback" not in stopped.stderr, stopped.stderr
    assert "database is locked" not in stopped.stderr
    study = load(tmp_path, "stop")
    assert study.trials and all(t.state != TrialState.RUNNING for t in study.trials)
    _, parents, children = mlflow_runs(tmp_path, "opt", "stop")
    assert [p.info.status for p in parents] == ["KILLED"]
    assert children and all(c.info.status != "RUNNING" for c in children)
    assert "interrupted" in {c.data.tags.get("mtlbench.status") for c in children}

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(load(tmp_path, "stop").get_trials(states=FINISHED)) == 4


def _open_heartbeat_study(faces: Path, cache: Path, work: Path, name: str, epochs: int):
    """A one-trial study of ``sum`` on the tiny backbone with 1 s heartbeats, opened the way the
    coordinator opens it (storage, study, MLflow parent; no trial yet). Returns (cfg, study)."""
    import torch

    from mtlbench.config import (
        DataConfig,
        ModelConfig,
        RunConfig,
        SearchConfig,
        TrackingConfig,
        TrainConfig,
    )
    from mtlbench.infra.progress import NullReporter
    from mtlbench.runs.optuna.study import open_study
    from mtlbench.tracking import Tracker
    from mtlbench.training.prepare import prepare_data

    uri = f"sqlite:///{work / 'mlflow.db'}"
    cfg = RunConfig(
        data=DataConfig(source=str(faces), cache_dir=str(cache)),
        model=ModelConfig(backbone="tiny"),
        train=TrainConfig(epochs=epochs, batch_size=32),
        search=SearchConfig(
            search="optuna",
            strategies=("sum",),
            n_trials=1,
            study_name=name,
            heartbeat_s=1,
            pruner="none",
        ),
        tracking=TrackingConfig(experiment="opt", tracking_uri=uri),
        output=str(work / "out"),
    )
    data = prepare_data(cfg.data, torch.device("cpu"))
    return cfg, open_study(cfg, data, Tracker(uri, "opt"), NullReporter()).study


def test_a_killed_workers_trial_is_retried(faces_dir, session_cache, tmp_path):
    from mtlbench.runs.optuna.study import run_optuna

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    cfg, opened_study = _open_heartbeat_study(faces_dir, session_cache, tmp_path, "kill", 4)
    cmd = [sys.executable, "-m", "mtlbench", "worker", "--study-name", "kill"]
    cmd += ["--storage", storage, "--worker-index", "1", "--threads", "1", "--quiet"]
    worker = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:

        def first_epoch_reported():
            trials = opened_study.get_trials(deepcopy=False)
            return trials and trials[0].intermediate_values

        _wait_for(first_epoch_reported, 180, "the worker's first epoch", worker)
        os.kill(worker.pid, signal.SIGSTOP)  # freeze it at once, then check it is mid-trial
        assert opened_study.get_trials()[0].state == TrialState.RUNNING
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    dead = opened_study.get_trials()[0]

    # The next run of the same study waits for the heartbeat to go stale, then retries.
    run_optuna(cfg)
    study = optuna.load_study(study_name="kill", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    retry = study.trials[1]
    assert retry.params == dead.params
    assert retry.system_attrs["failed_trial"] == 0
    client = MlflowClient(tracking_uri=uri)
    _, parents, children = mlflow_runs(tmp_path, "opt", "kill")
    assert len(parents) == 1
    # The dead trial left an epoch checkpoint: the retry continued it in the same MLflow run.
    assert len(children) == 1
    run = children[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["mtlbench.trial_number"] == "1"
    assert run.data.tags["mtlbench.retry_of"] == "0"
    assert int(run.data.tags["mtlbench.resumed_from_epoch"]) >= 0
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "val/score"))
    assert steps == [0, 1, 2, 3], "every epoch logged exactly once across the two workers"
    assert int(run.data.params["best.epoch"]) >= 0


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # the bare ask() below
def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_retried(
    faces_dir, session_cache, tmp_path
):
    """A worker killed between Optuna's ask and its first heartbeat leaves a RUNNING trial that
    Optuna's own stale check never fails. The next run must fail it after one grace period,
    re-queue it, and finish the study, instead of waiting for it forever."""
    import threading

    from mtlbench.runs.optuna.study import run_optuna

    cfg, opened_study = _open_heartbeat_study(faces_dir, session_cache, tmp_path, "orphan", 1)
    opened_study.ask()  # the "dead" worker: RUNNING, no heartbeat ever recorded

    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_optuna(cfg)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the study waited forever for a trial without a heartbeat"
    assert not errors, errors
    study = optuna.load_study(study_name="orphan", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[1].system_attrs["failed_trial"] == 0
    _, parents, children = mlflow_runs(tmp_path, "opt", "orphan")
    assert len(parents) == 1
    assert [c.info.status for c in children] == ["FINISHED"]
