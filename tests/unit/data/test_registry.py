"""Dataset plug-ins: declared tasks, the registry, entry points and LoadedData checks."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mtlbench.data import registry
from mtlbench.data.registry import DatasetPlugin, LoadedData
from mtlbench.mtl.tasks import Task, TaskSet


def _digits_like(n: int = 8, channels: int = 1) -> LoadedData:
    rng = np.random.default_rng(0)
    return LoadedData(
        images=rng.integers(0, 256, (n, channels, 12, 12), dtype=np.uint8),
        labels=rng.integers(0, 10, (n, 2)),
        strata=np.zeros(n, dtype=np.int64),
        source="memory",
        sha256="0" * 64,
    )


TWO = TaskSet(
    (
        Task("left", 0, "multiclass", 10, "left_acc", higher_is_better=True),
        Task("right", 1, "multiclass", 10, "right_acc", higher_is_better=True),
    )
)


def test_utkface_is_built_in_with_its_three_tasks() -> None:
    plugin = registry.get("utkface")
    assert plugin.tasks.names == ("age", "gender", "race")
    assert plugin.tasks.metric_names() == ("val/age_mae", "val/gender_acc", "val/race_acc")
    assert [t.kind for t in plugin.tasks] == ["regression", "binary", "multiclass"]
    assert plugin.tasks.by_name("age").unit == "years"


def test_unknown_dataset_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'.*utkface"):
        registry.get("nope")


def test_loaded_data_refuses_bad_shapes() -> None:
    good = _digits_like()
    assert good.channels == 1 and _digits_like(channels=3).channels == 3
    with pytest.raises(ValueError, match="1 or 3 channels"):
        LoadedData(np.zeros((2, 2, 4, 4), np.uint8), good.labels[:2], good.strata[:2], "m", "0")
    with pytest.raises(ValueError, match="uint8"):
        LoadedData(np.zeros((2, 1, 4, 4), np.float32), good.labels[:2], good.strata[:2], "m", "0")
    with pytest.raises(ValueError, match="8 images but 3 label rows"):
        LoadedData(good.images, good.labels[:3], good.strata, "m", "0")


def test_load_checks_labels_against_the_declared_tasks() -> None:
    three = TaskSet((*TWO, Task("sum", 2, "regression", 1, "sum_mae", higher_is_better=False)))
    plugin = DatasetPlugin("fake", "d", three, load=lambda *a, **k: _digits_like())
    with pytest.raises(ValueError, match="declares 3 tasks reading 3 label columns, but its"):
        registry.load(plugin, None, 12, cache_dir=Path("."))
    two = DatasetPlugin("fake2", "d", TWO, load=lambda *a, **k: _digits_like(), channels=1)
    assert registry.load(two, None, 12, cache_dir=Path(".")).labels.shape == (8, 2)
    rgb = DatasetPlugin("fake-rgb", "d", TWO, load=lambda *a, **k: _digits_like())
    with pytest.raises(ValueError, match=r"declares channels=3 but returned 1-channel images"):
        registry.load(rgb, None, 12, cache_dir=Path("."))
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 2"):
        DatasetPlugin("fake-2ch", "d", TWO, load=lambda *a, **k: _digits_like(), channels=2)
    with pytest.raises(ValueError, match="returned 12 px images for image_size=16"):
        registry.load(two, None, 16, cache_dir=Path("."))
    five = TaskSet(tuple(Task(t.name, t.column, "multiclass", 5, t.metric, True) for t in TWO))
    wrong = DatasetPlugin("fake5", "d", five, load=lambda *a, **k: _digits_like(), channels=1)
    with pytest.raises(ValueError, match=r"task 'left' \(multiclass\): labels must be whole "):
        registry.load(wrong, None, 12, cache_dir=Path("."))


def test_float_regression_targets_keep_their_fraction() -> None:
    """A plug-in may give real-valued regression targets: they reach the loss unrounded, and
    class columns in the same float matrix still work as classes."""
    from mtlbench.data.batches import to_tensors

    area = Task("area", 0, "regression", 1, "area_mae", higher_is_better=False)
    colour = Task("colour", 1, "multiclass", 3, "colour_acc", higher_is_better=True)
    labels = np.array([[0.25, 2.0], [0.75, 0.0]])
    data = LoadedData(np.zeros((2, 1, 4, 4), np.uint8), labels, np.zeros(2, np.int64), "m", "0")
    _, y = to_tensors(data, np.arange(2), "cpu")
    assert y.dtype == torch.float32 and y[:, 0].tolist() == [0.25, 0.75]
    out = torch.tensor([[0.5], [0.5]])
    assert float(area.loss(out, y)) == pytest.approx(0.25)  # |0.5-0.25|, |0.5-0.75|
    logits = torch.tensor([[0.0, 0.0, 9.0], [0.0, 9.0, 0.0]])
    assert float(colour.metric_sum(logits, y)) == 1.0  # first right (2), second wrong (1 != 0)
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([2, 0]))
    assert torch.allclose(colour.loss(logits, y), expected)


def test_entry_point_plugins_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = DatasetPlugin(
        "digits-ep", "two digits", TWO, load=lambda *a, **k: _digits_like(), channels=1
    )
    factory = SimpleNamespace(name="digits-ep", value="pkg:make", load=lambda: lambda: plugin)
    real = importlib.metadata.entry_points

    def entry_points(**kw):  # type: ignore[no-untyped-def]
        if kw.get("group") == registry.ENTRY_POINT_GROUP:
            return [factory]
        return real(**kw)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert registry.available()[:1] == ["utkface"] and "digits-ep" in registry.available()
    assert registry.get("digits-ep") is plugin
    utkface = registry.get("utkface")
    clash = SimpleNamespace(name="x", value="pkg:bad", load=lambda: utkface)
    monkeypatch.setattr(
        importlib.metadata,
        "entry_points",
        lambda **kw: [clash] if kw.get("group") == registry.ENTRY_POINT_GROUP else real(**kw),
    )
    with pytest.raises(ValueError, match="registered twice"):
        registry.available()


def test_task_set_refuses_duplicates_and_bad_kinds() -> None:
    with pytest.raises(ValueError, match="unique"):
        TaskSet((TWO[0], TWO[0]))
    with pytest.raises(ValueError, match="unknown kind 'ordinal'"):
        Task("x", 0, "ordinal", 3, "x_acc", higher_is_better=True)  # type: ignore[arg-type]


def test_constant_predictor_reference_by_kind() -> None:
    labels = np.array([[1, 0, 2, 1, 0], [2, 1, 2, 1, 1], [9, 1, 0, 0, 1], [4, 1, 2, 0, 0]])
    age = Task("a", 0, "regression", 1, "a_mae", higher_is_better=False)
    flag = Task("f", 1, "binary", 1, "f_acc", higher_is_better=True)
    cls = Task("c", 2, "multiclass", 3, "c_acc", higher_is_better=True)
    multi = Task("m", 3, "multilabel", 2, "m_acc", higher_is_better=True)
    # median of 1, 2, 4, 9 is 3; |1-3|+|2-3|+|4-3|+|9-3| = 10, over 4.
    assert age.constant_predictor(labels) == (3.0, 2.5)
    assert flag.constant_predictor(labels) == (1.0, 0.25)  # three ones out of four
    assert cls.constant_predictor(labels) == (2.0, 0.25)
    # columns 3, 4: ones 2/4 and 2/4 -> best constant errs on half of each.
    assert multi.constant_predictor(labels)[1] == 0.5
    assert flag.error(0.75) == 0.25 and age.error(3.0) == 3.0


def test_multilabel_loss_and_metric() -> None:
    multi = Task("m", 1, "multilabel", 2, "m_acc", higher_is_better=True)
    labels = torch.tensor([[7, 1, 0], [7, 0, 0]])
    out = torch.tensor([[3.0, -3.0], [3.0, 3.0]])
    # item 0 right on both labels, item 1 on none of two.
    assert float(multi.metric_sum(out, labels)) == 1.0
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        out, torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    )
    assert torch.allclose(multi.loss(out, labels), expected)
