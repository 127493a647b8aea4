"""Hand-computed formulas for the loss-based strategies (beyond sum/uncertainty/dwa)."""

import math

import pytest
import torch

from mtlbench import weighting
from mtlbench.mtl.tasks import TASKS

L = torch.tensor([2.0, 0.5, 1.0])


def _grad_wrt_losses(strategy, losses=L):
    x = losses.clone().requires_grad_(True)
    combo = strategy.combine_losses(x)
    (g,) = torch.autograd.grad(combo.loss, x)
    return combo, g


def test_mean_uses_one_over_t():
    combo, g = _grad_wrt_losses(weighting.create("mean", TASKS))
    assert combo.loss.item() == pytest.approx(3.5 / 3)
    assert combo.weights.tolist() == pytest.approx([1 / 3] * 3)
    assert g.tolist() == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize("spec", ["static", "static:1,1,1", "static:1"])
def test_static_ones_equals_sum(spec):
    combo, g = _grad_wrt_losses(weighting.create(spec, TASKS))
    ref, g_ref = _grad_wrt_losses(weighting.create("sum", TASKS))
    assert combo.loss.item() == ref.loss.item() == 3.5
    assert torch.equal(g, g_ref) and torch.equal(combo.weights, ref.weights)


def test_static_weights_in_task_order_and_broadcast():
    combo, g = _grad_wrt_losses(weighting.create("static:1,0.5,2", TASKS))
    assert combo.loss.item() == pytest.approx(2 + 0.25 + 2)
    assert g.tolist() == [1.0, 0.5, 2.0]
    assert weighting.create("static:2", TASKS).combine_losses(L).weights.tolist() == [2.0] * 3
    _, values = weighting.resolve("static:1,0.5,2")
    assert weighting.registry.describe(values, weighting.get("static")) == {
        "strategy.weights": "1,0.5,2"
    }


def test_static_rejects_bad_weights():
    with pytest.raises(ValueError, match="give 2 values for 3 tasks"):
        weighting.create("static:1,2", TASKS)
    with pytest.raises(ValueError, match="below its minimum"):
        weighting.create("static:1,-1,1", TASKS)
    with pytest.raises(ValueError, match="all zero"):
        weighting.create("static:0", TASKS)


@pytest.mark.parametrize(
    ("spec", "hot"), [("stl", 0), ("stl:age", 0), ("stl:gender", 1), ("stl:race", 2)]
)
def test_stl_is_one_hot(spec, hot):
    combo, g = _grad_wrt_losses(weighting.create(spec, TASKS))
    expected = [0.0, 0.0, 0.0]
    expected[hot] = 1.0
    assert g.tolist() == expected and combo.weights.tolist() == expected
    assert combo.loss.item() == L[hot].item()


def test_stl_rejects_unknown_task():
    with pytest.raises(ValueError, match="not one of the tasks: age, gender, race"):
        weighting.create("stl:height", TASKS)
    with pytest.raises(ValueError, match="not one of the tasks: age"):
        weighting.get("stl")(TASKS[:1], task="race")


def test_gls_is_geometric_mean_with_effective_weights():
    combo, g = _grad_wrt_losses(weighting.create("gls", TASKS))
    assert combo.loss.item() == pytest.approx(1.0)  # (2 * 0.5 * 1)^(1/3)
    assert g.tolist() == pytest.approx([1 / 6, 2 / 3, 1 / 3])
    assert combo.weights.tolist() == pytest.approx(g.tolist())
    other = torch.tensor([8.0, 1.0, 1.0])
    assert weighting.create("gls", TASKS).combine_losses(other).loss.item() == pytest.approx(2.0)


def test_rlw_draws_softmax_normal_from_its_seeded_generator():
    strat = weighting.create("rlw", TASKS, seed=7)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        expected = torch.softmax(torch.randn(3, generator=gen), dim=0)
        combo, g = _grad_wrt_losses(strat)
        assert torch.allclose(combo.weights, expected) and torch.allclose(g, expected)
        assert combo.weights.sum().item() == pytest.approx(1.0)
    a = weighting.create("rlw", TASKS, seed=1).combine_losses(L).weights
    b = weighting.create("rlw", TASKS, seed=2).combine_losses(L).weights
    assert not torch.allclose(a, b)


def test_rlw_ignores_the_global_rng():
    torch.manual_seed(0)
    a = weighting.create("rlw", TASKS, seed=3).combine_losses(L).weights
    torch.manual_seed(99)
    b = weighting.create("rlw", TASKS, seed=3).combine_losses(L).weights
    assert torch.equal(a, b)


def test_famo_first_step_weights_and_logit_update():
    famo = weighting.create("famo", TASKS)
    combo, g = _grad_wrt_losses(famo)
    # z = 1/3, c = 1 / sum(z / L) = 6/7, weight_t = c z_t / L_t
    assert combo.weights.tolist() == pytest.approx([1 / 7, 4 / 7, 2 / 7], rel=1e-6)
    assert g.tolist() == pytest.approx([1 / 7, 4 / 7, 2 / 7], rel=1e-6)
    assert combo.weights.sum().item() == pytest.approx(1.0)
    famo.after_step(L, torch.tensor([1.0, 0.5, 1.0]))
    # delta = (ln 2, 0, 0); grad = z (delta - z.delta) = (2, -1, -1) ln2 / 9; Adam's first step
    # moves every logit by beta * sign(grad).
    assert famo.logits.tolist() == pytest.approx([-0.025, 0.025, 0.025], rel=1e-5)
    z = torch.softmax(famo.logits, 0)
    expected = z / L / (z / L).sum()
    assert torch.allclose(famo.combine_losses(L).weights, expected)


def test_famo_decay_pulls_logits_back_to_zero():
    famo = weighting.create("famo", TASKS, overrides=["famo.gamma=0.5"])
    famo.logits.copy_(torch.tensor([1.0, 0.0, -1.0]))
    famo.after_step(L, L)  # delta = 0: only the decay acts
    assert famo.logits.tolist() == pytest.approx([1 - 0.025, 0.0, -1 + 0.025], rel=1e-5)


def _gradnorm_step(strategy, losses, norms):
    jac = torch.diag_embed(torch.tensor(norms)).reshape(3, 3)  # rows of norms 1, 2, 4
    x = losses.clone().requires_grad_(True)
    strategy.loss_weights.grad = None
    combo = strategy.combine_losses_with_gradients(x, jac)
    (g,) = torch.autograd.grad(combo.loss, x, retain_graph=True)
    combo.aux_loss.backward()
    return combo, g


def test_gradnorm_hand_computed_gradients_and_renormalisation():
    gn = weighting.create("gradnorm", TASKS)
    combo, g = _gradnorm_step(gn, L, [1.0, 2.0, 4.0])
    # step 0: L/L0 = 1 -> r = 1, target = mean(w n) = 7/3; L_grad = 4/3 + 1/3 + 5/3
    assert combo.aux_loss.item() == pytest.approx(10 / 3)
    assert gn.loss_weights.grad.tolist() == pytest.approx([-1.0, -2.0, 4.0])
    assert g.tolist() == [1.0, 1.0, 1.0] and combo.loss.item() == pytest.approx(3.5)
    with torch.no_grad():
        gn.loss_weights.copy_(torch.tensor([2.0, 1.0, 1.0]))  # as if the optimiser stepped
    combo, g = _gradnorm_step(gn, torch.tensor([1.0, 0.5, 1.0]), [1.0, 2.0, 4.0])
    w = [1.5, 0.75, 0.75]  # renormalised to sum T = 3 before use
    assert combo.weights.tolist() == pytest.approx(w) and g.tolist() == pytest.approx(w)
    ratio = [0.5, 1.0, 1.0]
    rate = [r / (2.5 / 3) for r in ratio]
    gvals = [1.5 * 1, 0.75 * 2, 0.75 * 4]
    g_bar = sum(gvals) / 3
    target = [g_bar * r**1.5 for r in rate]
    assert combo.aux_loss.item() == pytest.approx(
        sum(abs(a - b) for a, b in zip(gvals, target, strict=True))
    )
    signs = [math.copysign(1.0, a - b) for a, b in zip(gvals, target, strict=True)]
    assert gn.loss_weights.grad.tolist() == pytest.approx(
        [s * n for s, n in zip(signs, [1, 2, 4], strict=True)]
    )


def test_gradnorm_initial_losses_are_the_first_steps():
    gn = weighting.create("gradnorm", TASKS)
    _gradnorm_step(gn, L, [1.0, 1.0, 1.0])
    _gradnorm_step(gn, L / 2, [1.0, 1.0, 1.0])
    assert gn.initial_losses.tolist() == L.tolist()
