"""Wave-2 loss strategies (uw_so, stch, auto_lambda) against hand-computed multi-step sequences,
and the two extension points they and the double-sampling methods use (per-sample losses,
``prepare_step`` with a validation batch)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from torch import nn

from mtlbench import weighting
from mtlbench.config import DataConfig, ModelConfig, RunConfig, SearchConfig, TrainConfig
from mtlbench.mtl.model import build_model
from mtlbench.mtl.tasks import TASKS, random_batch, task_losses
from mtlbench.training import gradients
from mtlbench.training.fit import NullRun, TrialSpec, fit
from mtlbench.training.loop import ValidationStream
from mtlbench.training.prepare import prepare_data
from mtlbench.weighting import StepContext


# --- UW-SO ---------------------------------------------------------------------------------------
def test_uw_so_two_steps_by_hand():
    strategy = weighting.create("uw_so", TASKS)
    losses = torch.tensor([0.5, 2.0, 1.0], requires_grad=True)
    combo = strategy.combine_losses(losses)
    e = [math.exp(2.0), math.exp(0.5), math.exp(1.0)]  # exp(1 / (tau L)), tau = 1
    want = [x / sum(e) for x in e]
    assert combo.weights.tolist() == pytest.approx(want, rel=1e-6)
    combo.loss.backward()
    assert losses.grad.tolist() == pytest.approx(want, rel=1e-6)  # weights are constants
    assert float(combo.loss.detach()) == pytest.approx(
        sum(w * x for w, x in zip(want, [0.5, 2, 1], strict=True))
    )
    hot = weighting.create("uw_so", TASKS, overrides=["uw_so.tau=0.5"])
    second = hot.combine_losses(torch.tensor([1.0, 1.0, 4.0])).weights
    e = [math.exp(2.0), math.exp(2.0), math.exp(0.5)]
    assert second.tolist() == pytest.approx([x / sum(e) for x in e], rel=1e-6)


def test_uw_so_survives_a_zero_loss():
    w = weighting.create("uw_so", TASKS).combine_losses(torch.tensor([0.0, 1.0, 2.0])).weights
    assert torch.isfinite(w).all() and w.tolist() == pytest.approx([1.0, 0.0, 0.0])


# --- STCH ----------------------------------------------------------------------------------------
def test_stch_warmup_then_nadir_normalised_smooth_max_by_hand():
    strategy = weighting.create("stch", TASKS, overrides=["stch.warmup_epochs=1"])
    # epoch 0 and 1 (warm-up, then the nadir epoch): sum_t log L_t, weights 1 / L_t
    for epoch, losses in ((0, [2.0, 1.0, 4.0]), (1, [1.5, 0.5, 2.0])):
        combo = strategy.combine_losses(torch.tensor(losses))
        assert float(combo.loss) == pytest.approx(sum(math.log(x) for x in losses), rel=1e-6)
        assert combo.weights.tolist() == pytest.approx([1 / x for x in losses], rel=1e-6)
        strategy.on_epoch_end(epoch, torch.tensor(losses))
    assert strategy.nadir.tolist() == [1.5, 0.5, 2.0]
    # epoch 2, mu = 1: 3 log sum_t L_t / n_t = 3 log(2 + 1 + 0.5)
    losses = torch.tensor([3.0, 0.5, 1.0], requires_grad=True)
    combo = strategy.combine_losses(losses)
    assert float(combo.loss.detach()) == pytest.approx(3 * math.log(3.5), rel=1e-6)
    want = [3 / (1.5 * 3.5), 3 / (0.5 * 3.5), 3 / (2.0 * 3.5)]
    assert combo.weights.tolist() == pytest.approx(want, rel=1e-5)
    combo.loss.backward()
    assert losses.grad.tolist() == pytest.approx(want, rel=1e-5)
    # mu = 0.5: 3 * 0.5 * log sum_t (L_t / n_t)^2
    sharp = weighting.create("stch", TASKS, overrides=["stch.warmup_epochs=0", "stch.mu=0.5"])
    sharp.on_epoch_end(0, torch.tensor([1.5, 0.5, 2.0]))
    value = float(sharp.combine_losses(torch.tensor([3.0, 0.5, 1.0])).loss)
    assert value == pytest.approx(1.5 * math.log(4 + 1 + 0.25), rel=1e-6)


# --- Auto-Lambda ---------------------------------------------------------------------------------
class _Out(NamedTuple):
    features: torch.Tensor
    outputs: list[torch.Tensor]


class _Tiny(nn.Module):
    """Shared linear layer with batch norm, three scalar heads: small enough to check by hand."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(4, 3, dtype=torch.float64)
        self.norm = nn.BatchNorm1d(3, dtype=torch.float64)
        self.heads = nn.ModuleList(nn.Linear(3, 1, dtype=torch.float64) for _ in range(3))

    def forward(self, x: torch.Tensor) -> _Out:
        f = torch.tanh(self.norm(self.shared(x)))
        return _Out(f, [h(f).squeeze(1) for h in self.heads])


def _mse(outputs, y):
    return torch.stack([((o - y[:, t]) ** 2).mean() for t, o in enumerate(outputs)])


def _val_after_virtual_step(model, lam, batch, val, alpha):
    """``sum_t L_t(theta - alpha grad sum_i lam_i L_i; val)`` evaluated directly (float64)."""
    clone = _Tiny()
    clone.load_state_dict(model.state_dict())
    losses = _mse(clone(batch[0]).outputs, batch[1])
    weights = torch.as_tensor(lam, dtype=torch.float64)
    grads = torch.autograd.grad((weights * losses).sum(), list(clone.parameters()))
    with torch.no_grad():
        for p, g in zip(clone.parameters(), grads, strict=True):
            p -= alpha * g
    return float(_mse(clone(val[0]).outputs, val[1]).sum().detach())


def test_auto_lambda_two_meta_steps_match_finite_differences_and_adam_by_hand():
    model = _Tiny()
    g = torch.Generator().manual_seed(1)
    batch = (
        torch.randn(8, 4, generator=g, dtype=torch.float64),
        torch.randn(8, 3, generator=g, dtype=torch.float64),
    )
    val = (
        torch.randn(8, 4, generator=g, dtype=torch.float64),
        torch.randn(8, 3, generator=g, dtype=torch.float64),
    )
    strategy = weighting.create("auto_lambda", TASKS, overrides=["auto_lambda.meta_lr=0.01"])
    alpha, lr, b1, b2 = 0.1, 0.01, 0.9, 0.999
    lam = [0.1, 0.1, 0.1]
    m = [0.0] * 3
    v = [0.0] * 3
    before = {k: t.clone() for k, t in model.state_dict().items()}
    for k in (1, 2):
        h = 1e-6
        grad = []
        for t in range(3):  # central differences of the look-ahead validation loss in lambda_t
            up = [x + (h if i == t else 0) for i, x in enumerate(lam)]
            down = [x - (h if i == t else 0) for i, x in enumerate(lam)]
            grad.append(
                (
                    _val_after_virtual_step(model, up, batch, val, alpha)
                    - _val_after_virtual_step(model, down, batch, val, alpha)
                )
                / (2 * h)
            )
        strategy.prepare_step(StepContext(model, _mse, batch, val, alpha))
        for t in range(3):  # Adam, by hand
            m[t] = b1 * m[t] + (1 - b1) * grad[t]
            v[t] = b2 * v[t] + (1 - b2) * grad[t] ** 2
            lam[t] -= lr * (m[t] / (1 - b1**k)) / (math.sqrt(v[t] / (1 - b2**k)) + 1e-8)
        assert strategy.meta_weights.double().tolist() == pytest.approx(lam, rel=1e-5, abs=1e-7)
    # the meta step leaves the network (parameters and batch-norm statistics) as it found it
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    weights = strategy.combine_losses(torch.tensor([1.0, 2.0, 3.0])).weights
    assert weights.tolist() == pytest.approx(lam, rel=1e-5)


def test_auto_lambda_refuses_to_run_without_validation_batches():
    strategy = weighting.create("auto_lambda", TASKS)
    model = build_model(ModelConfig(backbone="tiny", head_hidden=16), TASKS)

    def none() -> tuple[torch.Tensor, torch.Tensor]:
        raise ValueError("strategy 'auto_lambda' needs validation batches; none were given")

    with pytest.raises(ValueError, match="validation"):
        gradients.prepare_step(strategy, model, random_batch(4, 32), none, 1e-3)


# --- per-sample losses (double sampling) ---------------------------------------------------------
def test_double_sampling_splits_the_batch_and_updates_from_the_third_sample():
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tiny", head_hidden=16), TASKS)
    x, y = random_batch(9, 32, seed=3)
    strategy = weighting.create("modo", TASKS, overrides=["modo.gamma=0.01"])
    features, losses = gradients.forward_losses(strategy, model, x, y)
    assert isinstance(losses, gradients.SampleLosses)
    assert losses.shape == (3, 3) and features.shape[0] == 9
    parts = [
        task_losses(model(x[3 * s : 3 * s + 3]).outputs, y[3 * s : 3 * s + 3]) for s in range(3)
    ]  # sample s is images 3s..3s+2, with its own forward pass
    for s in range(3):
        assert torch.allclose(losses.parts[s], parts[s], rtol=1e-5, atol=1e-6)
    step = gradients.backward(
        strategy, losses, features, model.shared_parameters(), model.head_parameters()
    )
    lam = strategy.lambd.float()
    assert torch.allclose(step.weights, lam)
    # shared parameters: sum_t lambda_t grad L_t(sample 3), nothing from samples 1 and 2
    want = torch.autograd.grad((lam * parts[2]).sum(), model.shared_parameters(), retain_graph=True)
    for p, w in zip(model.shared_parameters(), want, strict=True):
        assert torch.allclose(p.grad, w, rtol=1e-4, atol=1e-6)
    # heads: sum_t lambda_t * (mean over samples of L_t)
    full = torch.stack(parts).mean(dim=0)
    want = torch.autograd.grad((lam * full).sum(), model.head_parameters())
    for p, w in zip(model.head_parameters(), want, strict=True):
        assert torch.allclose(p.grad, w, rtol=1e-4, atol=1e-6)


def test_double_sampling_rejects_single_batch_losses_and_tiny_batches():
    strategy = weighting.create("sdmgrad", TASKS)
    model = build_model(ModelConfig(backbone="tiny", head_hidden=16), TASKS)
    x, y = random_batch(2, 32)
    out = model(x)
    with pytest.raises(ValueError, match="too small"):
        gradients.forward_losses(strategy, model, x, y)
    with pytest.raises(ValueError, match="per-sample losses"):
        gradients.backward(
            strategy,
            task_losses(out.outputs, y),
            out.features,
            model.shared_parameters(),
            model.head_parameters(),
        )


# --- validation stream and resume ----------------------------------------------------------------
def test_validation_stream_is_a_function_of_seed_and_epoch():
    images = torch.randint(0, 255, (10, 3, 8, 8), dtype=torch.uint8)
    labels = torch.zeros(10, 3, dtype=torch.long)
    a = ValidationStream(images, labels, 4, seed=1, epoch=2)
    b = ValidationStream(images, labels, 4, seed=1, epoch=2)
    c = ValidationStream(images, labels, 4, seed=1, epoch=3)
    first = [a()[0] for _ in range(5)]  # crosses a pass boundary (10 images, batches of 4)
    assert all(torch.equal(p, b()[0]) for p in first)
    assert not all(torch.equal(p, c()[0]) for p in first)


@pytest.mark.parametrize("spec", ["stch", "excess_mtl"])
def test_resume_after_the_state_changed_equals_uninterrupted(
    faces_dir, session_cache, tmp_path: Path, spec
):
    """STCH with its nadir fixed after epoch 0 (the generic resume test never leaves its
    4-epoch warm-up) and ExcessMTL's baseline risks: resumed = uninterrupted, exactly."""
    cfg = RunConfig(
        data=DataConfig(source=str(faces_dir), cache_dir=str(session_cache)),
        model=ModelConfig(backbone="tiny", head_hidden=16),
        train=TrainConfig(epochs=3, batch_size=32),
        search=SearchConfig(strategy_params=("stch.warmup_epochs=0",)),
    )
    cpu = torch.device("cpu")
    data = prepare_data(cfg.data, cpu)
    trial = TrialSpec(spec, 1e-3, 0)
    straight = fit(trial, cfg, data, cpu)

    def stop(epoch: int, val: dict[str, float]) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    folder = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        fit(trial, cfg, data, cpu, on_epoch=stop, checkpoint_dir=folder)
    resumed = fit(trial, cfg, data, cpu, run=NullRun(), checkpoint_dir=folder)

    def timeless(history):
        return [
            {k: v for k, v in h.items() if not k.startswith(("time/", "throughput/"))}
            for h in history
        ]

    assert timeless(resumed.history) == timeless(straight.history)
    assert resumed.test == straight.test
