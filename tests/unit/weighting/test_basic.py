"""Hand-computed formulas for sum, uncertainty and DWA, and the registry's behaviour."""

import math

import pytest
import torch

from mtlbench import weighting
from mtlbench.mtl.tasks import TASKS

L = torch.tensor([2.0, 0.5, 1.0])


def test_sum_is_plain_sum_with_unit_weights():
    combo = weighting.create("sum", TASKS).combine_losses(L)
    assert combo.loss.item() == 3.5
    assert combo.weights.tolist() == [1.0, 1.0, 1.0]


def test_uncertainty_at_zero_log_variance():
    strat = weighting.create("uncertainty", TASKS)
    combo = strat.combine_losses(L)
    # age (regression, Gaussian): 0.5*exp(0)*2 + 0; gender, race: exp(0)*L + 0
    assert combo.loss.item() == pytest.approx(0.5 * 2 + 0.5 + 1.0)
    assert combo.weights.tolist() == [0.5, 1.0, 1.0]


def test_uncertainty_hand_computed_with_learned_values():
    strat = weighting.create("uncertainty", TASKS)
    with torch.no_grad():
        strat.log_vars.copy_(torch.tensor([math.log(2), 0.0, -math.log(2)]))
    combo = strat.combine_losses(L)
    # weights 0.5*0.5, 1, 2; regularisers 0.5*ln2 + 0 - 0.5*ln2 = 0
    assert combo.weights.tolist() == pytest.approx([0.25, 1.0, 2.0])
    assert combo.loss.item() == pytest.approx(0.25 * 2 + 0.5 + 2.0)


def test_uncertainty_gradient_wrt_log_variance():
    strat = weighting.create("uncertainty", TASKS)
    strat.combine_losses(L).loss.backward()
    # d/ds [0.5 e^-s L + 0.5 s] = -0.5 L + 0.5 at s=0; classification: -L + 0.5
    assert strat.log_vars.grad.tolist() == pytest.approx([-0.5, 0.0, -0.5])


def test_uncertainty_laplace_form():
    strat = weighting.create(
        "uncertainty", TASKS, overrides=["uncertainty.regression_form=laplace"]
    )
    with torch.no_grad():
        strat.log_vars.copy_(torch.tensor([math.log(2), 0.0, 0.0]))
    combo = strat.combine_losses(L)
    assert combo.weights.tolist() == pytest.approx([0.5, 1.0, 1.0])
    assert combo.loss.item() == pytest.approx(0.5 * 2 + math.log(2) + 0.5 + 1.0)


def test_uncertainty_frozen_at_zero_equals_fixed_weighting():
    strat = weighting.create("uncertainty", TASKS)
    strat.log_vars.requires_grad_(False)
    losses = torch.tensor([3.0, 0.7, 1.3], requires_grad=True)
    fixed = 0.5 * losses[0] + losses[1] + losses[2]
    got = strat.combine_losses(losses).loss
    assert got.item() == pytest.approx(fixed.item())
    (g1,) = torch.autograd.grad(got, losses)
    assert g1.tolist() == pytest.approx([0.5, 1.0, 1.0])


def test_dwa_equals_sum_for_two_epochs_then_follows_the_formula():
    dwa = weighting.create("dwa", TASKS)
    for epoch, means in enumerate([[1.0, 1.0, 1.0], [0.5, 1.0, 2.0]]):
        combo = dwa.combine_losses(L)
        assert combo.weights.tolist() == [1.0, 1.0, 1.0], f"epoch {epoch}"
        assert combo.loss.item() == weighting.create("sum", TASKS).combine_losses(L).loss.item()
        dwa.on_epoch_end(epoch, torch.tensor(means))
    r = [0.5, 1.0, 2.0]  # L(t-1) / L(t-2)
    z = sum(math.exp(x / 2) for x in r)
    expected = [3 * math.exp(x / 2) / z for x in r]
    assert dwa.combine_losses(L).weights.tolist() == pytest.approx(expected)
    assert sum(expected) == pytest.approx(3.0)
    # Third epoch mean: ratios use the last two epochs only.
    dwa.on_epoch_end(2, torch.tensor([0.5, 0.5, 1.0]))
    r = [1.0, 0.5, 0.5]
    z = sum(math.exp(x / 2) for x in r)
    assert dwa.combine_losses(L).weights.tolist() == pytest.approx(
        [3 * math.exp(x / 2) / z for x in r]
    )


def test_dwa_temperature_parameter():
    dwa = weighting.create("dwa", TASKS, overrides=["dwa.temperature=1"])
    dwa.on_epoch_end(0, torch.tensor([1.0, 1.0, 1.0]))
    dwa.on_epoch_end(1, torch.tensor([2.0, 1.0, 1.0]))
    z = math.exp(2) + 2 * math.exp(1)
    assert dwa.combine_losses(L).weights[0].item() == pytest.approx(3 * math.exp(2) / z)


def test_dwa_history_survives_state_dict():
    a = weighting.create("dwa", TASKS)
    a.on_epoch_end(0, torch.tensor([1.0, 2.0, 3.0]))
    a.on_epoch_end(1, torch.tensor([0.9, 2.5, 2.0]))
    b = weighting.create("dwa", TASKS)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.combine_losses(L).weights, b.combine_losses(L).weights)


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown strategy .nope.; valid strategies: .*dwa.*sum"):
        weighting.create("nope", TASKS)


def test_strategy_params_are_validated():
    with pytest.raises(ValueError, match="no hyperparameter 'temp'; valid: temperature"):
        weighting.resolve("dwa", ["dwa.temp=2"])
    with pytest.raises(ValueError, match="not a valid float"):
        weighting.resolve("dwa", ["dwa.temperature=abc"])
    with pytest.raises(ValueError, match="below its minimum"):
        weighting.resolve("dwa", ["dwa.temperature=0"])
    with pytest.raises(ValueError, match="takes no ':' argument"):
        weighting.resolve("sum:1")
    _, values = weighting.resolve("dwa", ["dwa.temperature=3", "sum.ignored=1"])
    assert values == {"temperature": 3.0}


def test_trained_tasks_follow_the_weights():
    assert weighting.create("sum", TASKS).trained_tasks() == ("age", "gender", "race")
    assert weighting.create("stl:race", TASKS).trained_tasks() == ("race",)
    assert weighting.create("static:2,0,1", TASKS).trained_tasks() == ("age", "race")
    from mtlbench.weighting.registry import expand_spec

    assert expand_spec("stl") == ["stl:age", "stl:gender", "stl:race"]
    assert expand_spec("stl:age") == ["stl:age"]
    assert expand_spec("dwa") == ["dwa"]


def test_the_registry_loads_without_torchjd_or_cvxpy():
    """torchjd (and the cvxpy it imports) took 0.65 s of every process start; the strategies that
    wrap it import it when they are built, so loading the registry must not."""
    import subprocess
    import sys

    code = (
        "import sys, mtlbench.weighting as w; assert len(w.available()) > 20; "
        "print(sorted(m for m in ('torchjd', 'cvxpy') if m in sys.modules)); "
        "w.create('upgrad', __import__('mtlbench.mtl.tasks').mtl.tasks.TASKS); "
        "print('torchjd' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]
