"""A CLI run on tiny generated data, read back through MLflow's client."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from mtlbench.cli.app import app

CONTRACT_PARAMS = {
    "strategy",
    "lr",
    "seed",
    "epochs",
    "batch_size",
    "image_size",
    "backbone",
    "weights",
    "optimizer",
    "data",
    "data_sha256",
    "n_train",
    "n_val",
    "n_test",
}
EPOCH_METRICS = [
    "train/loss_age",
    "train/loss_gender",
    "train/loss_race",
    "train/loss_total",
    "val/loss_age",
    "val/loss_gender",
    "val/loss_race",
    "val/age_mae",
    "val/gender_acc",
    "val/race_acc",
    "weight/age",
    "weight/gender",
    "weight/race",
    "time/epoch_s",
    "throughput/train_img_s",
]
FINAL_METRICS = ["test/age_mae", "test/gender_acc", "test/race_acc"]


@pytest.fixture(scope="module")
def finished_run(faces_dir: Path, session_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("run")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    args = [
        "run",
        "--strategies",
        "sum,uncertainty,dwa",
        "--backbone",
        "tiny",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--data",
        str(faces_dir),
        "--cache-dir",
        str(session_cache),
        "--tracking-uri",
        uri,
        "--experiment",
        "it",
        "--output",
        str(work / "out"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return work, uri, result.output


def _runs(uri: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("it")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("mtlbench.kind") == "study"]
    children = [r for r in runs if r.data.tags.get("mtlbench.kind") == "trial"]
    return client, parents, children


def test_parent_and_child_runs_with_contract_params(finished_run):
    _, uri, output = finished_run
    _, parents, children = _runs(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(c.data.params["strategy"] for c in children) == ["dwa", "sum", "uncertainty"]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.info.status == "FINISHED"
        assert set(child.data.params) >= CONTRACT_PARAMS, CONTRACT_PARAMS - set(child.data.params)
        assert child.data.params["backbone"] == "tiny"
        # the machine, so a study continued elsewhere can say its step costs mix machines
        assert re.fullmatch(r".+ \(\d+ CPUs\)", child.data.tags["mtlbench.host"])
        assert child.data.params["epochs"] == "2"
        n = sum(int(child.data.params[k]) for k in ("n_train", "n_val", "n_test"))
        assert n == 160
    dwa = next(c for c in children if c.data.params["strategy"] == "dwa")
    assert dwa.data.params["strategy.temperature"] == "2"
    assert "160 images, 0 skipped" in output


def test_per_epoch_histories_and_final_metrics(finished_run):
    _, uri, _ = finished_run
    client, _, children = _runs(uri)
    for child in children:
        for key in EPOCH_METRICS:
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            assert sorted(steps) == [0, 1], (key, steps)
        for key in FINAL_METRICS:
            assert key in child.data.metrics
        assert 0.0 <= child.data.metrics["test/gender_acc"] <= 1.0
        assert 0.0 <= child.data.metrics["test/race_acc"] <= 1.0
        assert child.data.metrics["test/age_mae"] > 0


def test_applied_weights_are_logged(finished_run):
    _, uri, _ = finished_run
    client, _, children = _runs(uri)
    by_strategy = {c.data.params["strategy"]: c.info.run_id for c in children}
    for strategy in ("sum", "dwa"):  # DWA's weights are 1 in its first two epochs
        for task in ("age", "gender", "race"):
            hist = client.get_metric_history(by_strategy[strategy], f"weight/{task}")
            assert [m.value for m in hist] == [1.0, 1.0]
    # uncertainty starts at 0.5 (age, Gaussian form) and 1 (classification) and then learns
    age_w = client.get_metric_history(by_strategy["uncertainty"], "weight/age")
    assert 0.4 < age_w[0].value < 0.6


def test_dwa_equals_sum_in_its_first_two_epochs(finished_run):
    _, uri, _ = finished_run
    client, _, children = _runs(uri)
    by_strategy = {c.data.params["strategy"]: c.info.run_id for c in children}
    for key in ("val/age_mae", "val/race_acc", "train/loss_total"):
        a = [m.value for m in client.get_metric_history(by_strategy["sum"], key)]
        b = [m.value for m in client.get_metric_history(by_strategy["dwa"], key)]
        assert a == b, key


def test_artifacts_and_output_files(finished_run):
    work, uri, _ = finished_run
    client, parents, _ = _runs(uri)
    names = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"trials.csv", "leaderboard.csv", "leaderboard.md", "report.html", "curves.png"} <= names
    out = work / "out"
    assert (out / "curves.png").stat().st_size > 10_000
    trials = (out / "trials.csv").read_text().splitlines()
    assert len(trials) == 4  # header + 3 trials
    summary = (out / "leaderboard.md").read_text()
    assert "| sum |" in summary and "| dwa |" in summary


def test_stl_expands_per_task_and_delta_m_is_logged(faces_dir, session_cache, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        "run", "--strategies", "sum,stl", "--backbone", "tiny", "--epochs", "1",
        "--data", str(faces_dir), "--cache-dir", str(session_cache), "--tracking-uri", uri,
        "--experiment", "dm", "--output", str(tmp_path / "out"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("dm")
    runs = {
        r.data.params["strategy"]: r
        for r in client.search_runs([exp.experiment_id], "tags.`mtlbench.kind` = 'trial'")
    }
    assert set(runs) == {"sum", "stl:age", "stl:gender", "stl:race"}
    assert runs["stl:race"].data.params["tasks"] == "race"
    assert runs["sum"].data.params["tasks"] == "age,gender,race"
    # delta-m against the three single-task runs, recomputed by hand
    m = runs["sum"].data.metrics
    b = {t: runs[f"stl:{t}"].data.metrics for t in ("age", "gender", "race")}
    expected = (
        100
        / 3
        * (
            (m["test/age_mae"] - b["age"]["test/age_mae"]) / b["age"]["test/age_mae"]
            - (m["test/gender_acc"] - b["gender"]["test/gender_acc"])
            / b["gender"]["test/gender_acc"]
            - (m["test/race_acc"] - b["race"]["test/race_acc"]) / b["race"]["test/race_acc"]
        )
    )
    assert m["test/delta_m"] == pytest.approx(expected, rel=1e-6)
    assert "test/delta_m" not in runs["stl:age"].data.metrics


def test_training_experiment_dataset_inputs_and_best_values_as_params(finished_run):
    _, uri, _ = finished_run
    client, _, children = _runs(uri)
    exp = client.get_experiment_by_name("it")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    for child in children:
        (ds,) = [i.dataset for i in child.inputs.dataset_inputs]
        assert ds.digest == child.data.params["data_sha256"][:16]
        assert json.loads(ds.profile)["n_train"] == int(child.data.params["n_train"])
        # Summary values are params, so the metric charts open on per-epoch curves.
        assert not any(k.startswith("best") for k in child.data.metrics)
        assert 0 <= int(child.data.params["best.epoch"]) <= 1
        for key in ("score", "age_mae", "gender_acc", "race_acc"):
            float(child.data.params[f"best.val_{key}"])
        # CPU run, default --system-metrics auto: off.
        assert not any(k.startswith("system/") for k in child.data.metrics)
