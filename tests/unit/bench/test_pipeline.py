"""The pipeline and study-throughput benchmarks on tiny data: what they measure, not timings."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from mtlbench.bench.pipeline import TutorialDataset, pipeline_benchmark
from mtlbench.cli.app import app
from mtlbench.data import parse_name


def test_tutorial_dataset_parses_labels_like_the_article(faces_dir):
    files = sorted(f"UTKFace/{p.name}" for p in faces_dir.iterdir())[:5]
    ds = TutorialDataset(faces_dir.parent, files, 32)
    for i, path in enumerate(files):
        x, (age, gender, race) = ds[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        labels = parse_name(path.split("/")[1])
        assert (age, gender, race) == (labels.age, labels.gender, labels.race)


def test_pipeline_benchmark_measures_both_pipelines_on_the_same_images(faces_dir, tmp_path):
    report = pipeline_benchmark(
        str(faces_dir),
        max_samples=64,
        batch_size=16,
        backbone="tiny",
        cache_dir=tmp_path,
        step_repeats=2,
    )
    assert report.n_images == 64
    for pair in (report.load_img_s, report.step_img_s, report.epoch_img_s):
        assert all(v > 0 for v in pair)
    assert report.first_decode_s > 0 and report.mtl_load_share > 0
    table = report.table()
    assert "| whole epoch |" in table and "| data loading alone |" in table
    assert "64 images of" in table


@pytest.mark.slow
def test_concurrency_bench_runs_both_modes(faces_dir, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "bench", "--concurrency", "2", "--data", str(faces_dir), "--backbone", "tiny",
            "--max-samples", "100", "--cache-dir", str(tmp_path),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "one trial after another" in result.output and "2 worker processes" in result.output
    assert "speed-up:" in result.output
