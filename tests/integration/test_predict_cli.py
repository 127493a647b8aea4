"""End to end: a tiny study logs its models, `mtlbench predict` uses them on generated images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from mtlbench.cli.app import app

RACES = {"White", "Black", "Asian", "Indian", "Others"}


@pytest.fixture(scope="module")
def study(faces_dir: Path, session_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("predict")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    args = [
        "run", "--strategies", "sum,uncertainty", "--lrs", "1e-3,3e-3", "--backbone", "tiny",
        "--epochs", "2", "--batch-size", "32", "--data", str(faces_dir),
        "--cache-dir", str(session_cache), "--tracking-uri", uri, "--experiment", "pr",
        "--output", str(work / "out"), "--log-model", "best", "--register-model", "faces",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    images = work / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        pixels = rng.integers(0, 256, (48 + 8 * i, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"face{i}.png")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    return work, uri, images


def _trials(uri: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("pr")
    runs = client.search_runs([exp.experiment_id], "tags.`mtlbench.kind` = 'trial'")
    return client, runs


def test_best_trial_of_each_strategy_has_a_model_with_card_and_signature(study) -> None:
    import mlflow

    _, uri, _ = study
    client, runs = _trials(uri)
    with_model = [r for r in runs if client.list_artifacts(r.info.run_id, "model")]
    assert sorted(r.data.params["strategy"] for r in with_model) == ["sum", "uncertainty"]
    for run in with_model:
        same = [r for r in runs if r.data.params["strategy"] == run.data.params["strategy"]]
        best = min(same, key=lambda r: float(r.data.params["best.val_score"]))
        assert run.info.run_id == best.info.run_id  # one seed: the best lr is the best trial
        assert run.info.status == "FINISHED"
        mlflow.set_tracking_uri(uri)
        info = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/model")
        card = info.metadata["mtlbench"]
        tasks = {t["name"]: t for t in card["tasks"]}
        assert tasks["gender"]["labels"] == ["male", "female"]
        assert tasks["race"]["labels"] == ["White", "Black", "Asian", "Indian", "Others"]
        assert card["image_size"] == 32 and card["channels"] == 3
        inputs = info.signature.inputs.to_dict()[0]
        assert inputs["tensor-spec"]["dtype"] == "uint8"
        assert list(inputs["tensor-spec"]["shape"]) == [-1, 3, 32, 32]
        assert info.saved_input_example_info is not None
    versions = client.search_model_versions("name = 'faces'")
    assert len(versions) == 1 and versions[0].run_id in {r.info.run_id for r in with_model}


@pytest.mark.parametrize("form", ["run id", "runs:/", "models:/"])
def test_predict_every_task_for_each_readable_image(study, form: str) -> None:
    _, uri, images = study
    client = MlflowClient(uri)
    winner = client.search_model_versions("name = 'faces'")[0].run_id
    model = {"run id": winner, "runs:/": f"runs:/{winner}/model", "models:/": "models:/faces/1"}
    args = ["predict", str(images), "--model", model[form], "--tracking-uri", uri]
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [Path(p["image"]).name for p in out["predictions"]] == [f"face{i}.png" for i in range(3)]
    for pred in out["predictions"]:
        assert isinstance(pred["age"], float)
        assert pred["gender"] in ("male", "female") and 0.5 <= pred["gender_p"] <= 1.0
        assert pred["race"] in RACES and 0.2 <= pred["race_p"] <= 1.0
    assert [Path(u["image"]).name for u in out["unreadable"]] == ["broken.jpg"]
    assert "broken.jpg" in result.stderr


def test_predict_matches_the_logged_model_applied_directly(study) -> None:
    import mlflow.pytorch
    import torch

    from mtlbench.predict.images import load_images

    _, uri, images = study
    mlflow.set_tracking_uri(uri)
    network = mlflow.pytorch.load_model("models:/faces/1", map_location="cpu").eval()
    batch = load_images([images / "face0.png"], 32)
    with torch.inference_mode():
        raw = network(torch.from_numpy(batch.pixels)).numpy()[0]
    args = ["predict", str(images / "face0.png"), "--model", "models:/faces/1"]
    result = CliRunner().invoke(app, [*args, "--tracking-uri", uri, "--format", "csv"])
    assert result.exit_code == 0, result.output
    header, row = result.stdout.strip().splitlines()
    rec = dict(zip(header.split(","), row.split(","), strict=True))
    assert float(rec["age"]) == pytest.approx(float(raw[0]), rel=1e-5)
    p_female = 1.0 / (1.0 + np.exp(-float(raw[1])))
    assert rec["gender"] == ("female" if p_female > 0.5 else "male")
    assert float(rec["gender_p"]) == pytest.approx(max(p_female, 1 - p_female), abs=1e-6)
    race = ["White", "Black", "Asian", "Indian", "Others"][int(np.argmax(raw[2:7]))]
    assert rec["race"] == race


def test_table_output_names_every_task(study) -> None:
    _, uri, images = study
    args = ["predict", str(images), "--model", "models:/faces/1", "--tracking-uri", uri]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for word in ("image", "age", "gender", "race", "face0.png", "years"):
        assert word in result.stdout


def test_missing_model_is_one_line_and_exit_code_2(study, tmp_path: Path) -> None:
    _, uri, images = study
    for model in ("runs:/" + "0" * 32 + "/model", "models:/nope/1", "not-a-model"):
        args = ["predict", str(images), "--model", model, "--tracking-uri", uri]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (model, result.output)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stdout == ""
