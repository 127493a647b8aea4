"""Bad input: one clear line on stderr, exit code 2, no traceback; bad files skipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtlbench.cli.app import app
from mtlbench.data import write_faces
from tests.conftest import balanced_labels


def _run(tmp_path: Path, *args: str):
    base = [
        "run",
        "--backbone",
        "tiny",
        "--epochs",
        "1",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--tracking-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--output",
        str(tmp_path / "out"),
    ]
    return CliRunner().invoke(app, [*base, *args])


def _assert_clean_error(result, needle: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert needle in result.output


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    _assert_clean_error(_run(tmp_path, "--data", str(tmp_path / "empty")), "empty")


def test_folder_of_junk_only(tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    (junk / "20_0_0_20170101000000000.jpg.chip.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (junk / "x.jpg").write_bytes(b"")
    _assert_clean_error(_run(tmp_path, "--data", str(junk)), "no valid image found")


def test_missing_path(tmp_path):
    _assert_clean_error(_run(tmp_path, "--data", str(tmp_path / "nowhere")), "does not exist")


def test_unknown_strategy_lists_valid_ones(tmp_path):
    result = _run(tmp_path, "--strategies", "sum,fancy")
    _assert_clean_error(result, "unknown strategy 'fancy'")
    assert "dwa" in result.output and "uncertainty" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--lrs", "0"], "learning rate must be a positive number"),
        (["--batch-size", "0"], "batch_size must be a positive integer"),
        (["--backbone", "vgg"], "unknown backbone 'vgg'"),
        (["--optimizer", "adam"], "unknown optimizer 'adam'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--strategy-param", "dwa.temp=3"], "no hyperparameter 'temp'"),
    ],
)
def test_bad_options(tmp_path, args, needle):
    _assert_clean_error(_run(tmp_path, *args), needle)


def test_corrupt_image_among_good_ones_is_skipped_and_counted(tmp_path):
    folder = tmp_path / "mixed"
    write_faces(folder, balanced_labels(40), size=32, seed=3)
    (folder / "30_1_2_20170101000000001.jpg.chip.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    result = _run(tmp_path, "--data", str(folder), "--strategies", "sum")
    assert result.exit_code == 0, result.output
    assert "40 images, 1 skipped" in result.output
    skipped = next((tmp_path / "cache").rglob("skipped.tsv")).read_text()
    assert "30_1_2_20170101000000001.jpg.chip.jpg" in skipped


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mtlbench", "run", "--data", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "error:" in proc.stderr and "does not exist" in proc.stderr


def test_help_does_not_import_torch_or_mlflow():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "mtlbench", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert "run" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    for heavy in ("torch", "torchvision", "mlflow"):
        assert heavy not in imported, f"--help imported {heavy}"


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("mtlbench ")


def test_corrupt_and_empty_archives(tmp_path):
    bad = tmp_path / "broken.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage that is not gzip at all")
    _assert_clean_error(_run(tmp_path, "--data", str(bad)), "cannot read archive")
    import zipfile

    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w"):
        pass
    _assert_clean_error(_run(tmp_path, "--data", str(empty)), "empty")
    other = tmp_path / "faces.rar"
    other.write_bytes(b"Rar!")
    _assert_clean_error(_run(tmp_path, "--data", str(other)), "not a folder or a supported archive")


def test_cuda_without_cuda(tmp_path, faces_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error path needs a machine without it")
    result = _run(tmp_path, "--data", str(faces_dir), "--device", "cuda")
    _assert_clean_error(result, "no CUDA device is available")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[train]\nepochz = 3\n", "unknown key 'epochz' in [train]"),
        ("[train\n", "not valid TOML"),
        ("import os\nos.system('echo pwned')\n", "not valid TOML"),
    ],
)
def test_bad_config_file(tmp_path, text, needle):
    path = tmp_path / "study.toml"
    path.write_text(text)
    _assert_clean_error(_run(tmp_path, "--config", str(path)), needle)


def test_diverging_learning_rate_is_a_result_not_a_crash(tmp_path, faces_dir):
    from mlflow.tracking import MlflowClient

    result = _run(tmp_path, "--data", str(faces_dir), "--strategies", "sum", "--lrs", "1e-3,1e12")
    assert result.exit_code == 0, result.output
    assert "diverged" in result.output
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mtlbench")
    trials = {
        r.data.params["lr"]: r
        for r in client.search_runs([exp.experiment_id], "tags.`mtlbench.kind` = 'trial'")
    }
    bad, good = trials["1e+12"], trials["0.001"]
    assert bad.data.tags["mtlbench.status"] == "diverged"
    assert bad.data.tags["diverged_epoch"] == "0"
    assert bad.data.tags["diverged_task"].split()[0] in ("age", "gender", "race", "total")
    assert "test/age_mae" not in bad.data.metrics
    assert good.data.tags["mtlbench.status"] == "finished"
    trials_csv = (tmp_path / "out" / "trials.csv").read_text()
    assert "diverged" in trials_csv


def test_unknown_dataset_lists_registered_ones(tmp_path):
    result = _run(tmp_path, "--dataset", "imagenet-mtl")
    _assert_clean_error(
        result,
        "unknown dataset 'imagenet-mtl'; choose one of: utkface, multi-digits, multi-digits-4",
    )
    assert not (tmp_path / "mlflow.db").exists()  # refused before any work


def test_datasets_command_lists_tasks_with_kind_metric_and_direction():
    result = CliRunner().invoke(app, ["datasets"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {
        line.split("│")[2].strip(): [c.strip() for c in line.split("│")[1:-1]]
        for line in result.output.splitlines()
        if line.count("│") >= 8 and line.split("│")[2].strip()
    }
    assert rows["age"][:6] == [
        "utkface",
        "age",
        "regression",
        "1",
        "age_mae (years)",
        "lower is better",
    ]
    assert rows["gender"][2:6] == ["binary", "1", "gender_acc", "higher is better"]
    assert rows["race"][2:6] == ["multiclass", "5", "race_acc", "higher is better"]
    assert rows["left"][:6] == [
        "multi-digits",
        "left",
        "multiclass",
        "10",
        "left_acc",
        "higher is better",
    ]
    assert rows["right"][2:5] == ["multiclass", "10", "right_acc"]
    assert rows["top_left"][0] == "multi-digits-4"
    assert [rows[t][4] for t in ("top_right", "bottom_left", "bottom_right")] == [
        "top_right_acc",
        "bottom_left_acc",
        "bottom_right_acc",
    ]
