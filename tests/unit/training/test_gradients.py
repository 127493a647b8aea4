"""The gradient engine: Jacobians in both modes, and what each need writes into ``.grad``."""

import pytest
import torch

from mtlbench import weighting
from mtlbench.config import ModelConfig
from mtlbench.mtl.model import build_model
from mtlbench.mtl.tasks import TASKS, random_batch, task_losses
from mtlbench.training import gradients
from mtlbench.training.gradients import last_shared_layer, task_jacobian


def _toy():
    torch.manual_seed(0)
    w1 = torch.randn(4, 3, requires_grad=True)
    w2 = torch.randn(3, requires_grad=True)
    x = torch.randn(5, 4)
    h = torch.tanh(x @ w1)
    losses = torch.stack([(h @ w2).pow(2).mean(), h.sum(), (h[:, 0] * w2[1]).mean()])
    return losses, [w1, w2]


@pytest.mark.parametrize("mode", gradients.JACOBIAN_MODES)
def test_jacobian_matches_per_task_autograd(mode):
    losses, params = _toy()
    jac = task_jacobian(losses, params, mode=mode)
    assert jac.shape == (3, 4 * 3 + 3) and jac.dtype == torch.float32
    for t in range(3):
        g = torch.autograd.grad(losses[t], params, retain_graph=True)
        assert torch.allclose(jac[t], torch.cat([gi.reshape(-1) for gi in g]), atol=1e-6)


@pytest.mark.parametrize("mode", gradients.JACOBIAN_MODES)
def test_unused_input_gives_zero_rows(mode):
    a = torch.randn(3, requires_grad=True)
    b = torch.randn(2, requires_grad=True)
    losses = torch.stack([a.sum(), (a * 2).sum()])
    jac = task_jacobian(losses, [a, b], mode=mode)
    assert jac[:, :3].tolist() == [[1.0] * 3, [2.0] * 3]
    assert torch.equal(jac[:, 3:], torch.zeros(2, 2))


def test_unknown_mode_is_refused():
    losses, params = _toy()
    with pytest.raises(
        ValueError, match="unknown Jacobian mode 'fast'; valid: batched, sequential"
    ):
        task_jacobian(losses, params, mode="fast")  # type: ignore[arg-type]


def _model():
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone="tiny", head_hidden=16), TASKS)


def _batch():
    return random_batch(6, 16)


def _losses(model, x, y):
    out = model(x)
    return out, task_losses(out.outputs, y)


# Strategies whose shared update is a linear combination of the task gradients with the weights
# they report (graddrop masks elementwise; db_mtl uses a moving average and scales heads apart).
LINEAR = ["mgda", "mgda_ub", "upgrad", "cagrad", "nash_mtl", "pcgrad", "gradvac", "aligned_mtl"]


@pytest.mark.parametrize("mode", gradients.JACOBIAN_MODES)
@pytest.mark.parametrize("name", LINEAR)
def test_engine_writes_the_gradient_of_the_weighted_sum(name, mode):
    model = _model()
    x, y = _batch()
    out, losses = _losses(model, x, y)
    strategy = weighting.create(name, TASKS, seed=0)
    step = gradients.backward(
        strategy,
        losses,
        out.features,
        model.shared_parameters(),
        model.head_parameters(),
        mode=mode,
    )
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    _, losses2 = _losses(model, x, y)
    (step.weights * losses2).sum().backward()
    for (pname, p), g in zip(model.named_parameters(), got, strict=True):
        assert torch.allclose(g, p.grad, rtol=1e-4, atol=1e-6), f"{name}/{mode}: {pname}"
    assert step.total_loss.item() == pytest.approx((step.weights * losses2).sum().item(), rel=1e-6)


def test_both_modes_give_the_same_step():
    grads = {}
    for mode in gradients.JACOBIAN_MODES:
        model = _model()
        x, y = _batch()
        out, losses = _losses(model, x, y)
        strategy = weighting.create("upgrad", TASKS)
        gradients.backward(
            strategy,
            losses,
            out.features,
            model.shared_parameters(),
            model.head_parameters(),
            mode=mode,
        )
        grads[mode] = [p.grad for p in model.parameters()]
    for a, b in zip(grads["batched"], grads["sequential"], strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)


def test_last_shared_layer_is_the_last_conv_or_linear_weight():
    model = _model()
    (layer,) = last_shared_layer(model.shared_parameters())
    assert layer is model.backbone.body[3].weight
    resnet = build_model(ModelConfig(backbone="resnet18", head_hidden=8), TASKS)
    (layer,) = last_shared_layer(resnet.shared_parameters())
    assert layer is resnet.backbone.layer4[1].conv2.weight
    with pytest.raises(ValueError, match="no shared parameter with >= 2 dimensions"):
        last_shared_layer([torch.nn.Parameter(torch.ones(3))])


def test_gradnorm_sees_the_last_layer_gradient_norms():
    model = _model()
    x, y = _batch()
    out, losses = _losses(model, x, y)
    layer = model.backbone.body[3].weight
    expected = torch.stack(
        [torch.autograd.grad(losses[t], layer, retain_graph=True)[0].norm() for t in range(3)]
    )
    strategy = weighting.create("gradnorm", TASKS)
    gradients.backward(
        strategy, losses, out.features, model.shared_parameters(), model.head_parameters()
    )
    # step 0: every target is mean(n) (w = 1), so dL_grad/dw_t = n_t * sign(n_t - mean(n))
    signs = torch.sign(expected - expected.mean())
    assert torch.allclose(strategy.loss_weights.grad, expected * signs, rtol=1e-5)


def test_representation_path_under_bf16_autocast_matches_float32():
    weights = {}
    for autocast in (False, True):
        model = _model()
        x, y = _batch()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
        losses = task_losses(out.outputs, y)
        assert out.features.dtype == (torch.bfloat16 if autocast else torch.float32)
        strategy = weighting.create("mgda_ub", TASKS)
        step = gradients.backward(
            strategy, losses, out.features, model.shared_parameters(), model.head_parameters()
        )
        assert all(p.grad.dtype == torch.float32 for p in model.parameters())
        weights[autocast] = step.weights
    assert torch.allclose(weights[False], weights[True], atol=0.05)


def test_gramian_and_combination_of_channels_last_gradients():
    torch.manual_seed(0)
    grads = [torch.randn(4, 3, 5, 5) for _ in range(3)]
    rows = tuple((g.contiguous(memory_format=torch.channels_last), g[0, 0].clone()) for g in grads)
    per_task = gradients.TaskGradients(rows)
    flat = torch.stack([torch.cat([g.reshape(-1), g[0, 0].reshape(-1)]) for g in grads]).double()
    assert torch.allclose(per_task.gramian(), flat @ flat.T, rtol=1e-6)
    w = torch.tensor([0.5, -1.0, 2.0])
    combined = per_task.combine(w)  # consumes task 0's tensors (in place)
    assert torch.allclose(combined[0], 0.5 * grads[0] - grads[1] + 2 * grads[2], atol=1e-6)


@pytest.mark.parametrize("mode", gradients.JACOBIAN_MODES)
def test_per_parameter_path_equals_the_matrix_formula(mode):
    """DB-MTL gets its gradients parameter by parameter from the engine; over two steps (the
    moving average carries over) the shared update must equal the [T, m] formula."""
    model = _model()
    shared = model.shared_parameters()
    engine = weighting.create("db_mtl", TASKS)
    reference = weighting.create("db_mtl", TASKS)
    assert engine.gradients_per_parameter
    for step in range(2):
        x, y = _batch()
        x = x * (1 + step)  # a different batch: the moving average must matter
        model.zero_grad(set_to_none=True)
        out, losses = _losses(model, x, y)
        jac = task_jacobian(losses, shared, mode=mode)
        want = reference.combine_gradients(jac, losses.detach())
        got = gradients.backward(
            engine, losses, out.features, shared, model.head_parameters(), mode=mode
        )
        flat = torch.cat([p.grad.reshape(-1) for p in shared])
        assert torch.allclose(flat, want.gradient, rtol=1e-5, atol=1e-7), step
        assert torch.allclose(got.weights, want.weights)
    assert torch.allclose(engine.ema, reference.ema, rtol=1e-5, atol=1e-8)
