"""One generic test over every registered strategy, present and future (timm-style)."""

import copy
from typing import Any

import pytest
import torch

from mtlbench import weighting
from mtlbench.config import ModelConfig, TrainConfig
from mtlbench.mtl.model import build_model
from mtlbench.mtl.tasks import TASKS, random_batch, task_losses
from mtlbench.training import gradients
from mtlbench.training.loop import make_optimizer


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return random_batch(8, 32, seed=seed)


def _losses(model, x, y):
    out = model(x)
    return out, task_losses(out.outputs, y)


def _step(model, strategy, x, y, autocast: bool = False):
    ctx = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if autocast
        else torch.autocast("cpu", enabled=False)
    )
    val = _batch(99)
    gradients.prepare_step(strategy, model, (x, y), lambda: val, 1e-3)
    with ctx:
        features, losses = gradients.forward_losses(strategy, model, x, y)
    step = gradients.backward(
        strategy, losses, features, model.shared_parameters(), model.head_parameters()
    )
    return gradients.mean_losses(losses), step


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _model():
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone="tiny", head_hidden=16), TASKS)


@pytest.mark.parametrize("name", weighting.available())
def test_one_step_gives_finite_gradients_weights_and_round_trips(name):
    model = _model()
    strategy = weighting.create(name, TASKS, seed=0)
    opt = make_optimizer(TrainConfig(), 1e-3, model, strategy)
    x, y = _batch()
    losses, step = _step(model, strategy, x, y)
    assert step.weights.shape == (len(TASKS),)
    assert torch.isfinite(step.weights).all()
    assert not step.weights.requires_grad
    assert torch.isfinite(step.total_loss)
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"
    for pname, p in strategy.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name}: {pname}"
    opt.step()
    if strategy.needs_losses_after_step:
        with torch.no_grad():
            _, after = _losses(model, x, y)
        strategy.after_step(losses.detach(), after)
    strategy.on_epoch_end(0, losses.detach())
    strategy.on_epoch_end(1, losses.detach() * 0.9)
    for key, value in strategy.diagnostics().items():
        assert isinstance(key, str) and isinstance(value, float), f"{name}: diagnostics {key}"

    clone = weighting.create(name, TASKS, seed=123)  # another seed: state must come from the dict
    clone.load_state_dict(strategy.state_dict())
    a, b = strategy.state_dict(), clone.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert _same(a[k], b[k]), f"{name}: state_dict entry {k} did not round-trip"

    # The restored strategy continues exactly as the original would (RNG state included).
    model_a, model_b = copy.deepcopy(model), copy.deepcopy(model)
    x2, y2 = _batch(1)
    _, step_a = _step(model_a, strategy, x2, y2)
    _, step_b = _step(model_b, clone, x2, y2)
    # (allclose: an interior-point solver need not be bit-identical across problem instances)
    assert torch.allclose(step_a.weights, step_b.weights, rtol=1e-5, atol=1e-7), name
    for (pname, pa), pb in zip(model_a.named_parameters(), model_b.parameters(), strict=True):
        assert torch.allclose(pa.grad, pb.grad, rtol=1e-5, atol=1e-7), f"{name}: {pname}"


@pytest.mark.parametrize("name", weighting.available())
def test_one_step_under_bf16_autocast_gives_finite_gradients(name):
    model = _model()
    strategy = weighting.create(name, TASKS, seed=0)
    x, y = _batch()
    _, step = _step(model, strategy, x, y, autocast=True)
    assert torch.isfinite(step.weights).all() and step.weights.dtype == torch.float32
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.dtype == p.dtype, f"{name}: {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}"


@pytest.mark.parametrize("name", weighting.available())
def test_every_strategy_documents_itself(name):
    cls = weighting.get(name)
    assert cls.name == name
    assert cls.paper and cls.summary
    module_doc = __import__(cls.__module__, fromlist=["_"]).__doc__
    assert module_doc and len(module_doc) > 80, f"{name}: module docstring must state the formula"
    for h in cls.hparams:
        assert h.validate(h.default) == h.default
        assert h.format(h.default)  # what MLflow logs as strategy.<name>
