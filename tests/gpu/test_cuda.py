"""The GPU path (run on a machine with CUDA; skipped with a reason elsewhere): data resident
on the device, augmentation there, channels_last and bf16 autocast chosen automatically."""

from __future__ import annotations

import math

import pytest
import torch

from mtlbench.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mtlbench.training.fit import NullRun, TrialSpec, fit, trial_params
from mtlbench.training.prepare import prepare_data, resolve_amp, resolve_channels_last

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def on_gpu(faces_dir, session_cache):
    cfg = RunConfig(
        data=DataConfig(source=str(faces_dir), cache_dir=str(session_cache)),
        model=ModelConfig(backbone="resnet18"),
        train=TrainConfig(epochs=2, batch_size=32, device="cuda"),
    )
    device = torch.device("cuda")
    return cfg, prepare_data(cfg.data, device), device


def test_data_lives_on_the_device(on_gpu):
    _, data, _ = on_gpu
    assert data.train[0].is_cuda and data.train[0].dtype == torch.uint8


@pytest.mark.parametrize("strategy", ["sum", "uncertainty", "mgda_ub", "pcgrad", "nash_mtl"])
def test_training_on_cuda_with_bf16_and_channels_last(on_gpu, strategy):
    cfg, data, device = on_gpu
    assert resolve_amp(cfg.train, device) == torch.bfloat16
    assert resolve_channels_last(cfg.train, device)
    run = NullRun()
    result = fit(TrialSpec(strategy, 1e-3, 0), cfg, data, device, run=run)
    assert result.status == "finished"
    assert all(math.isfinite(v) for v in result.test.values())
    params = trial_params(TrialSpec(strategy, 1e-3, 0), cfg, data, device)
    assert params["amp"] == "bf16" and params["channels_last"] == "True"
    assert params["device"].startswith("cuda")
