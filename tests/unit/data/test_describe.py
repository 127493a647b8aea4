"""``mtlbench data inspect --dataset NAME``: any plug-in's labels described per declared task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from mtlbench.cli.app import app
from mtlbench.data.describe import describe
from mtlbench.data.registry import DatasetPlugin, LoadedData, inspect_plugin
from mtlbench.mtl.tasks import Task, TaskSet

TASKS = TaskSet(
    (
        Task("area", 0, "regression", 1, "area_mae", higher_is_better=False, unit="px"),
        Task("filled", 1, "binary", 1, "filled_acc", True, classes=("outline", "filled")),
        Task("colour", 2, "multiclass", 3, "colour_acc", higher_is_better=True),
        Task("tags", 3, "multilabel", 2, "tags_f1", higher_is_better=True),
    )
)
# Columns: area, filled, colour, tag 0, tag 1 (4 images).
LABELS = np.array(
    [
        [0.5, 1, 2, 1, 0],
        [1.5, 0, 2, 1, 1],
        [2.5, 1, 0, 0, 0],
        [3.5, 1, 2, 1, 0],
    ]
)


def _plugin(split: np.ndarray | None = None) -> DatasetPlugin:
    data = LoadedData(
        images=np.zeros((4, 3, 16, 16), np.uint8),
        labels=LABELS,
        strata=np.zeros(4, np.int64),
        source="memory",
        sha256="ab" * 32,
        n_skipped=2,
        split=split,
    )
    return DatasetPlugin(
        "fake", "four images", TASKS, load=lambda *a, **k: data, default_image_size=16
    )


def test_each_task_is_described_by_its_kind() -> None:
    plugin = _plugin(split=np.array([0, 0, 1, 2], np.int8))
    text = describe(plugin, plugin.load(None, 16))
    lines = text.splitlines()
    assert lines[:3] == [
        "dataset: fake (four images)",
        "source: memory",
        f"content sha256: {'ab' * 32}",
    ]
    assert "images: 4, 3 channel(s), 16 px; 2 skipped" in lines
    assert "own split: train 2, val 1, test 1" in lines
    # Regression: range, mean 2, median 2, and a 10-bin histogram over 0.5..3.5 (bins of 0.3).
    assert "area (regression): 0.5-3.5 px, mean 2, median 2" in lines
    hist = lines[lines.index("area (regression): 0.5-3.5 px, mean 2, median 2") + 1 :][:10]
    assert [int(h.split()[1]) for h in hist] == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert hist[0].split()[0] == "0.5-0.8"
    assert "filled (binary): outline 1 (25.0%), filled 3 (75.0%)" in lines
    assert "colour (multiclass): 0 1 (25.0%), 1 0 (0.0%), 2 3 (75.0%)" in lines
    assert "tags (multilabel, positives): 0 3 (75.0%), 1 1 (25.0%)" in lines


def test_a_plugin_without_an_inspector_is_loaded_checked_and_described(tmp_path: Path) -> None:
    text = inspect_plugin(_plugin(), None, cache_dir=tmp_path)
    assert "own split" not in text and "colour (multiclass)" in text


def test_cli_describes_a_builtin_plugin_and_keeps_utkfaces_file_view(
    session_cache: Path,
) -> None:
    args = ["data", "inspect", "--dataset", "multi-digits", "--cache-dir", str(session_cache)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "images: 8,000, 1 channel(s), 32 px; 0 skipped" in result.output
    assert "own split: train 6,000, val 1,000, test 1,000" in result.output
    assert "left (multiclass): 0 " in result.output and "right (multiclass)" in result.output
    result = CliRunner().invoke(app, ["data", "inspect", "--dataset", "nope"])
    assert result.exit_code == 2 and "unknown dataset 'nope'" in result.output
