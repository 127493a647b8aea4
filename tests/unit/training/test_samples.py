"""The double-sampling engine (``mtlbench.training.samples``): it fills exactly the Gramian
blocks a strategy declares, with values equal to float64 dot products of gradients computed
here one loss at a time, and forms the update from the declared samples only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from mtlbench import weighting
from mtlbench.config import ModelConfig
from mtlbench.mtl.model import build_model
from mtlbench.mtl.tasks import TASKS, Task, random_batch
from mtlbench.training import gradients
from mtlbench.training.samples import SampleLosses, sample_shared_gradients, streamed_sample
from mtlbench.weighting.base import GradientNeed, SampleWeights, Strategy


class _Recorder(Strategy):
    """Unregistered test strategy: records the Gramian and returns fixed coefficients."""

    name = "recorder"
    needs = GradientNeed.SHARED_PARAMETERS
    samples_per_step = 3
    coef: ClassVar[np.ndarray] = np.arange(1.0, 10.0).reshape(3, 3) / 10

    def __init__(self, tasks: Sequence[Task], **hp: Any) -> None:
        super().__init__(tasks, **hp)
        self.seen: torch.Tensor | None = None

    def sample_gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> SampleWeights:
        self.seen = gram.clone()
        shared = torch.as_tensor(self.coef, dtype=torch.float32)
        if self.update_samples is not None:
            keep = torch.zeros(3, 1)
            keep[list(self.update_samples)] = 1.0
            shared = shared * keep
        return SampleWeights(shared, shared.sum(dim=0))


class _CrossOnly(_Recorder):
    gramian_blocks = ((0, 1),)
    update_samples = (2,)


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(backbone="tiny", head_hidden=8), TASKS)
    x, y = random_batch(9, 16, seed=seed)
    return model, x, y


def _rows(losses: SampleLosses, params: list[torch.nn.Parameter]) -> np.ndarray:
    """Every (sample, task) gradient, one autograd call each, as a float64 matrix."""
    out = []
    for loss in (entry for part in losses.parts for entry in part):
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        out.append(
            np.concatenate(
                [
                    (g if g is not None else torch.zeros_like(p)).double().reshape(-1).numpy()
                    for g, p in zip(grads, params, strict=True)
                ]
            )
        )
    return np.stack(out)


@pytest.mark.parametrize("cls", [_Recorder, _CrossOnly])
def test_declared_blocks_hold_the_exact_dot_products_and_the_rest_is_nan(cls):
    model, x, y = _setup()
    strategy = cls(TASKS)
    _, losses = gradients.forward_losses(strategy, model, x, y)
    assert isinstance(losses, SampleLosses)
    params = list(model.shared_parameters())
    rows = _rows(losses, params)
    want = rows @ rows.T
    grads, _ = sample_shared_gradients(strategy, losses, params, "sequential")
    seen = strategy.seen.numpy()
    blocks = cls.gramian_blocks or [(a, b) for a in range(3) for b in range(a, 3)]
    mask = np.zeros((9, 9), dtype=bool)
    for a, b in blocks:
        mask[3 * a : 3 * a + 3, 3 * b : 3 * b + 3] = True
        mask[3 * b : 3 * b + 3, 3 * a : 3 * a + 3] = True
    scale = np.abs(want).max()
    assert np.allclose(seen[mask], want[mask], rtol=1e-5, atol=1e-6 * scale)
    assert np.isnan(seen[~mask]).all()
    # the update: sum over the declared samples of coef[s] . J_s
    coef = strategy.coef.copy()
    if cls.update_samples is not None:
        coef[[s for s in range(3) if s not in cls.update_samples]] = 0
    expected = coef.reshape(-1) @ rows
    got = np.concatenate([g.double().reshape(-1).numpy() for g in grads])
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_a_strategy_weighting_an_undeclared_sample_is_refused():
    class Liar(_CrossOnly):
        def sample_gramian_weights(self, gram, losses):
            shared = torch.ones(3, 3)
            return SampleWeights(shared, shared.sum(dim=0))

    model, x, y = _setup()
    strategy = Liar(TASKS)
    _, losses = gradients.forward_losses(strategy, model, x, y)
    assert isinstance(losses, SampleLosses)
    with pytest.raises(ValueError, match=r"samples \[0, 1\] outside its declared"):
        sample_shared_gradients(strategy, losses, list(model.shared_parameters()), "sequential")


def test_streamed_sample_is_one_that_no_update_or_diagonal_block_needs():
    assert streamed_sample([(0, 1)], [2]) == 1
    assert streamed_sample([(0, 1)], [1]) == 0
    assert streamed_sample([(0, 1), (1, 1)], [2]) == 0
    assert streamed_sample([(0, 0), (0, 1), (1, 1)], [0, 1]) is None


@pytest.mark.parametrize("name", ["modo", "sdmgrad"])
def test_modo_and_sdmgrad_weights_come_from_the_cross_block_of_samples_one_and_two(name):
    """The strategy's weights after one step equal its own update applied to J1 J2^T computed
    here from per-loss gradients (the engine's blocks, values and update all checked)."""
    model, x, y = _setup(seed=2)
    strategy = weighting.create(name, TASKS)
    twin = weighting.create(name, TASKS)
    _, losses = gradients.forward_losses(strategy, model, x, y)
    assert isinstance(losses, SampleLosses)
    params = list(model.shared_parameters())
    rows = _rows(losses, params)
    features = torch.zeros(0)  # unused on the double-sampling path
    gradients.backward(strategy, losses, features, params, list(model.head_parameters()))
    cross = rows[0:3] @ rows[3:6].T
    full = np.full((9, 9), np.nan)
    full[0:3, 3:6] = cross
    want = twin.sample_gramian_weights(torch.as_tensor(full), losses.detach()).shared[2]
    got = strategy.lambd if name == "modo" else strategy.w
    twin_state = twin.lambd if name == "modo" else twin.w
    assert torch.allclose(got, twin_state, rtol=1e-5, atol=1e-7)
    update = np.concatenate([p.grad.double().reshape(-1).numpy() for p in params])
    expected = want.double().numpy() @ rows[6:9]
    assert np.allclose(update, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
