"""MLflow-native pieces on a real SQLite store: experiment type, dataset input, system metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from mtlbench.runs.observe import dataset_name, log_dataset, system_metrics, wants_system_metrics
from mtlbench.tracking import (
    EXPERIMENT_KIND_TAG,
    TRAINING_KIND,
    Tracker,
    load_histories,
    runs_table_url,
)

PARAMS = {
    "data": "/data/faces/UTKFace.tar.gz",
    "data_sha256": "ab" * 32,
    "split_sha256": "cd" * 32,
    "n_train": "70",
    "n_val": "15",
    "n_test": "15",
    "image_size": "32",
    "max_samples": "all",
}


def test_every_experiment_tracker_touches_is_marked_as_training(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    old = client.create_experiment("made-elsewhere")  # reused, not created, by the tracker
    assert client.get_experiment(old).tags.get(EXPERIMENT_KIND_TAG) is None
    for name in ("made-elsewhere", "new"):
        tracker = Tracker(uri, name)
        tags = client.get_experiment(tracker.experiment_id).tags
        assert tags[EXPERIMENT_KIND_TAG] == TRAINING_KIND == "custom_model_development"


def test_runs_table_url_asks_for_the_training_view() -> None:
    assert (
        runs_table_url("http://127.0.0.1:5000/", "7")
        == "http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
    )


def test_dataset_names() -> None:
    assert dataset_name("synthetic") == "synthetic"
    assert dataset_name("/x/UTKFace.tar.gz") == "UTKFace"
    assert dataset_name("/x/UTKFace/") == "UTKFace"


def test_dataset_input_carries_digest_source_and_split_sizes(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "ds")
    run = tracker.start_run("trial")
    log_dataset(tracker.client, run.run_id, PARAMS)
    inputs = MlflowClient(uri).get_run(run.run_id).inputs.dataset_inputs
    assert len(inputs) == 1
    ds = inputs[0].dataset
    assert ds.name == "UTKFace"
    assert ds.digest == "ab" * 8  # the first 16 hex of the content sha256
    assert json.loads(ds.source) == {"uri": "file:///data/faces/UTKFace.tar.gz"}
    profile = json.loads(ds.profile)
    assert profile["sha256"] == "ab" * 32
    assert (profile["n_train"], profile["n_val"], profile["n_test"]) == (70, 15, 15)
    assert profile["num_rows"] == 100 and profile["image_size"] == 32
    assert {(t.key, t.value) for t in inputs[0].tags} == {("mlflow.data.context", "training")}


@pytest.mark.parametrize(
    ("choice", "device", "expected"),
    [("auto", "cuda", True), ("auto", "cpu", False), ("on", "cpu", True), ("off", "cuda", False)],
)
def test_system_metrics_default_on_for_cuda_only(choice: str, device: str, expected: bool) -> None:
    assert wants_system_metrics(choice, device) is expected


def test_system_metrics_are_logged_even_for_a_short_block(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "sys")
    run = tracker.start_run("trial")
    with system_metrics(run.run_id, uri, enabled=True, interval_s=30.0):
        time.sleep(0.2)  # far shorter than the interval: MLflow's monitor alone logs nothing
    metrics = MlflowClient(uri).get_run(run.run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert metrics["system/system_memory_usage_megabytes"] > 0
    off = tracker.start_run("off")
    with system_metrics(off.run_id, uri, enabled=False):
        pass
    assert not MlflowClient(uri).get_run(off.run_id).data.metrics


def test_cli_run_with_system_metrics_on_a_cpu(
    faces_dir: Path, session_cache: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from mtlbench.cli.app import app

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        "run", "--strategies", "sum", "--backbone", "tiny", "--epochs", "1",
        "--data", str(faces_dir), "--cache-dir", str(session_cache), "--tracking-uri", uri,
        "--experiment", "sm", "--output", str(tmp_path / "out"), "--system-metrics",
        "--log-model", "none",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("sm")
    (trial,) = client.search_runs([exp.experiment_id], "tags.`mtlbench.kind` = 'trial'")
    assert trial.data.params["device"] == "cpu"
    assert trial.data.metrics["system/cpu_utilization_percentage"] >= 0
    assert trial.data.metrics["system/system_memory_usage_megabytes"] > 0
    assert not client.list_artifacts(trial.info.run_id, "model")  # --log-model none


def test_histories_keep_the_newest_value_of_a_step_a_restarted_trial_logged_twice(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = Tracker(uri, "restart").start_run("trial")
    # First attempt: epochs 0-1, then killed; the restart without a checkpoint re-runs 0-2.
    for step, value in enumerate((3.0, 2.0)):
        run.log_metrics({"val/score": value}, step=step, timestamp_ms=1_000 + step)
    for step, value in enumerate((2.5, 1.5, 1.0)):
        run.log_metrics({"val/score": value}, step=step, timestamp_ms=2_000 + step)
    frame = load_histories(uri, [run.run_id], ["val/score"])
    assert list(frame.columns) == ["run_id", "key", "step", "value"]
    assert frame["step"].tolist() == [0, 1, 2]
    assert frame["value"].tolist() == [2.5, 1.5, 1.0]
    assert load_histories(uri, [run.run_id], ["no/such"]).empty
