"""Two `mtlbench run` processes at once on the same data, cache and MLflow SQLite store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient


@pytest.mark.slow
def test_two_runs_share_cache_and_store(faces_dir: Path, tmp_path: Path):
    cache = tmp_path / "cache"  # fresh: both processes race to decode it
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # fresh: both race to create the schema

    def start(strategy: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mtlbench",
                "run",
                "--strategies",
                strategy,
                "--seeds",
                "0,1",
                "--backbone",
                "tiny",
                "--epochs",
                "2",
                "--data",
                str(faces_dir),
                "--cache-dir",
                str(cache),
                "--tracking-uri",
                uri,
                "--experiment",
                "both",
                "--output",
                str(tmp_path / strategy),
                "--checkpoint-dir",
                str(tmp_path / "ckpt"),
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    procs = [start("sum"), start("dwa")]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err

    entries = [d for d in cache.iterdir() if d.is_dir() and d.name.endswith("px-v1")]
    assert len(entries) == 1, "both processes agreed on one cache entry"
    assert not [d for d in cache.iterdir() if d.name.startswith(".")], "no temp dirs left"
    images = np.load(entries[0] / "images.npy")
    assert images.shape[0] == 160

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("both")
    runs = client.search_runs([exp.experiment_id])
    trials = [r for r in runs if r.data.tags.get("mtlbench.kind") == "trial"]
    parents = [r for r in runs if r.data.tags.get("mtlbench.kind") == "study"]
    assert len(parents) == 2 and len(trials) == 4
    assert all(r.info.status == "FINISHED" for r in runs)
    assert sorted(r.data.params["strategy"] for r in trials) == ["dwa", "dwa", "sum", "sum"]
    for r in trials:
        assert len(client.get_metric_history(r.info.run_id, "val/score")) == 2
    # Artifacts live next to the store the user chose, not in the working directory.
    assert (tmp_path / "mlruns").is_dir()
