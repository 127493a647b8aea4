"""Checkpoint and resume: an interrupted trial continues exactly (CPU) for every strategy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtlbench import weighting
from mtlbench.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mtlbench.training import checkpoint
from mtlbench.training.fit import NullRun, TrialSpec, fit
from mtlbench.training.prepare import prepare_data

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny(faces_dir, session_cache):
    cfg = RunConfig(
        data=DataConfig(source=str(faces_dir), cache_dir=str(session_cache)),
        model=ModelConfig(backbone="tiny", head_hidden=16),
        train=TrainConfig(epochs=3, batch_size=32),
    )
    return cfg, prepare_data(cfg.data, CPU)


def _timeless(history):
    return [
        {k: v for k, v in h.items() if not k.startswith(("time/", "throughput/"))} for h in history
    ]


def _interrupt_after(epoch_to_stop: int):
    def cb(epoch: int, val: dict[str, float]) -> None:
        if epoch == epoch_to_stop:
            raise KeyboardInterrupt

    return cb


@pytest.mark.parametrize("name", weighting.available())
def test_interrupted_then_resumed_equals_uninterrupted(tiny, tmp_path: Path, name: str):
    cfg, data = tiny
    spec_name = {"static": "static:1,0.5,2"}.get(name, name)
    spec = TrialSpec(spec_name, 1e-3, 0)
    straight = fit(spec, cfg, data, CPU)

    folder = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit(spec, cfg, data, CPU, on_epoch=_interrupt_after(1), checkpoint_dir=folder)
    assert checkpoint.exists(folder, checkpoint.LAST)
    assert checkpoint.load(folder, checkpoint.LAST)["epoch"] == 1

    run = NullRun()
    resumed = fit(spec, cfg, data, CPU, run=run, checkpoint_dir=folder)
    assert run.tags["mtlbench.resumed_from_epoch"] == 1
    assert _timeless(resumed.history) == _timeless(straight.history)
    assert resumed.test == straight.test
    assert resumed.best_epoch == straight.best_epoch
    # A finished trial keeps only its best weights, for the study to log as a model.
    assert [p.name for p in folder.iterdir() if p.suffix == ".json"] == ["best.json"]
    assert not checkpoint.exists(folder, checkpoint.LAST)
    assert checkpoint.exists(folder, checkpoint.BEST)
    checkpoint.remove(folder)
    assert not folder.exists(), "the study removes them after logging the models"


def test_resume_relogs_history_with_original_timestamps(tiny, tmp_path):
    cfg, data = tiny
    spec = TrialSpec("dwa", 1e-3, 0)
    first = NullRun()
    with pytest.raises(KeyboardInterrupt):
        fit(spec, cfg, data, CPU, run=first, on_epoch=_interrupt_after(0), checkpoint_dir=tmp_path)
    second = NullRun()
    fit(spec, cfg, data, CPU, run=second, checkpoint_dir=tmp_path)
    # epoch 0 logged again on resume (idempotent in MLflow: same timestamp), then 1, 2, and
    # at the best epoch the constant predictor's reference/test_* and the final test/*
    best = second.metrics[-1][0]
    assert [step for step, _ in second.metrics] == [0, 1, 2, best, best]
    assert all(k.startswith("reference/test_") for k in second.metrics[-2][1])
    assert second.metrics[0][1] == first.metrics[0][1]


def test_keep_checkpoints_keeps_the_last_and_best(tiny, tmp_path):
    cfg, data = tiny
    keep = RunConfig(
        data=cfg.data,
        model=cfg.model,
        train=TrainConfig(epochs=2, batch_size=32, keep_checkpoints=True),
    )
    fit(TrialSpec("sum", 1e-3, 0), keep, data, CPU, checkpoint_dir=tmp_path)
    state = checkpoint.load(tmp_path, checkpoint.LAST)
    assert state["epoch"] == 1 and len(state["history"]) == 2
    assert checkpoint.exists(tmp_path, checkpoint.BEST)


def test_checkpoints_are_double_buffered_and_weights_only(tmp_path):
    checkpoint.save({"a": torch.ones(2)}, tmp_path, checkpoint.LAST)
    checkpoint.save({"a": torch.zeros(2)}, tmp_path, checkpoint.LAST)
    assert torch.equal(checkpoint.load(tmp_path, checkpoint.LAST)["a"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last-a.pt", "last-b.pt", "last.json"]
    # A save killed halfway leaves a torn spare file: the pointer still names the good one.
    spare = tmp_path / "last-a.pt"
    spare.write_bytes(spare.read_bytes()[:10])
    assert torch.equal(checkpoint.load(tmp_path, checkpoint.LAST)["a"], torch.zeros(2))
    # the next save overwrites the torn spare
    checkpoint.save({"a": torch.full((2,), 7.0)}, tmp_path, checkpoint.LAST)
    assert torch.equal(checkpoint.load(tmp_path, checkpoint.LAST)["a"], torch.full((2,), 7.0))
    checkpoint.remove(tmp_path)
    assert not tmp_path.exists() or not list(tmp_path.iterdir())

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    tmp_path.mkdir(exist_ok=True)
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match=r"(?i)weights_only|unsupported|global"):
        checkpoint.load_file(tmp_path / "evil.pt")
