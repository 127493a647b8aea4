"""The built-in multi-digits plug-ins through the whole trial path (prepare_data -> fit):
every registered strategy at T = 2 and T = 4, metric names from the declared tasks, the
plug-in's own split, one-channel images and the constant-predictor reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlbench import weighting
from mtlbench.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mtlbench.data import registry
from mtlbench.training.fit import NullRun, TrialSpec, fit
from mtlbench.training.prepare import prepare_data

CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=["multi-digits", "multi-digits-4"])
def digits(request, session_cache):
    cfg = RunConfig(
        data=DataConfig(dataset=request.param, max_samples=80, cache_dir=str(session_cache)),
        model=ModelConfig(backbone="tiny", head_hidden=16),
        train=TrainConfig(epochs=1, batch_size=16, eval_batch_size=64, device="cpu"),
    )
    return cfg, prepare_data(cfg.data, CPU)


def test_prepared_digits_follow_the_declared_tasks_and_the_fixed_split(digits):
    cfg, data = digits
    plugin = registry.get(cfg.data.dataset)
    t = len(plugin.tasks)
    assert data.tasks == plugin.tasks and t == (2 if cfg.data.dataset == "multi-digits" else 4)
    assert data.train[0].shape[1:] == (1, 32, 32) and data.train[1].shape[1] == t
    assert data.params["dataset"] == cfg.data.dataset and data.params["channels"] == "1"
    # The construction's split (6000 / 1000 / 1000) subsampled to 80: 60 / 10 / 10.
    sizes = [len(part[1]) for part in (data.train, data.val, data.test)]
    assert sum(sizes) == 80 and sizes[0] > 4 * sizes[1] and sizes[1] >= 5 and sizes[2] >= 5
    assert not data.flip  # left and right must not swap
    # Constant predictor: the majority class of each training column, scored on test.
    ytr, yte = data.train[1].numpy(), data.test[1].numpy()
    for k, task in enumerate(data.tasks):
        majority = np.bincount(ytr[:, k]).argmax()
        assert data.constant_test[task.metric] == pytest.approx(np.mean(yte[:, k] == majority))
        assert data.reference.error(task.name) == pytest.approx(
            1 - np.bincount(ytr[:, k]).max() / len(ytr)
        )
    assert data.reference.initial_outputs() == {}  # no regression head to start off zero


@pytest.mark.parametrize("name", weighting.available())
def test_every_strategy_runs_a_trial_on_the_digit_tasks(digits, name):
    cfg, data = digits
    run = NullRun()
    result = fit(TrialSpec(name, 1e-3, 0), cfg, data, CPU, run=run)
    assert result.status == "finished", result.message
    names = data.tasks.names
    epoch = run.metrics[0][1]
    for task in names:
        for key in (f"val/{task}_acc", f"train/loss_{task}", f"weight/{task}"):
            assert math.isfinite(epoch[key]), (name, key)
        assert 0.0 <= result.test[f"{task}_acc"] <= 1.0
    assert not any(k.startswith(("val/age", "val/gender", "val/race")) for k in epoch)
    assert math.isfinite(result.test["score"])
