"""Tiny training runs on multi-digits: every strategy at T = 2 and T = 4, and a LeNet that
learns both digits well above chance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlbench import weighting
from mtlbench.data.multi_digits import MultiDigitsSpec, build_arrays
from mtlbench.infra.progress import NullReporter
from mtlbench.mtl.gray_backbones import LeNet, build_gray_backbone
from mtlbench.mtl.model import HydraNet
from mtlbench.mtl.tasks import Task
from mtlbench.training.loop import train_one_epoch


def _tasks(names: tuple[str, ...]) -> tuple[Task, ...]:
    return tuple(Task(n, i, "multiclass", 10, f"{n}_acc", True) for i, n in enumerate(names))


def _batches(images: np.ndarray, labels: np.ndarray, size: int) -> list[tuple[torch.Tensor, ...]]:
    x = (torch.from_numpy(np.asarray(images)).float() / 255.0 - 0.5) / 0.5
    y = torch.from_numpy(np.asarray(labels))
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def _runnable() -> list[str]:
    # Single-task baselines name their task (stl:<task>); the others run as registered.
    return [n for n in weighting.available() if not any(h.expand for h in weighting.get(n).hparams)]


@pytest.mark.parametrize("n_digits", [2, 4])
def test_every_strategy_trains_a_step_on_t_digits(n_digits: int) -> None:
    spec = MultiDigitsSpec(n_digits=n_digits, image_size=32 if n_digits == 2 else 40,
                           n_train=24, n_val=8, n_test=8, seed=0)  # fmt: skip
    data = build_arrays(spec)
    idx = data.indices("train")
    batches = _batches(data.images[idx], data.labels[idx], 12)
    tasks = _tasks(spec.tasks)
    for name in _runnable():
        torch.manual_seed(0)
        model = HydraNet(LeNet(1), LeNet.feature_dim, tasks, hidden=32)
        strategy = weighting.create(name, tasks, seed=0)
        opt = torch.optim.Adam(list(model.parameters()) + list(strategy.parameters()), lr=1e-3)
        stats = train_one_epoch(
            model, strategy, opt, batches,  # type: ignore[arg-type]
            amp_dtype=None, reporter=NullReporter(), description=name,
            validation_batch=lambda b=batches: b[0],
        )  # fmt: skip
        losses = np.asarray(stats.task_losses, dtype=float)
        assert losses.shape == (n_digits,), name
        assert np.all(np.isfinite(losses)), name
        assert np.all(losses > 1.0), name  # near log(10) = 2.3 at the start: cross-entropy


def test_lenet_learns_both_digits_well_above_chance() -> None:
    spec = MultiDigitsSpec(n_digits=2, image_size=32, n_train=1500, n_val=10, n_test=300, seed=0)
    data = build_arrays(spec)
    tr, te = data.indices("train"), data.indices("test")
    tasks = _tasks(spec.tasks)
    torch.manual_seed(0)
    model = HydraNet(LeNet(1), LeNet.feature_dim, tasks, hidden=50)
    strategy = weighting.create("sum", tasks)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = _batches(data.images[tr], data.labels[tr], 32)
    for _ in range(4):
        train_one_epoch(model, strategy, opt, batches,  # type: ignore[arg-type]
                        amp_dtype=None, reporter=NullReporter(), description="sum")  # fmt: skip
    model.eval()
    ((x, y),) = _batches(data.images[te], data.labels[te], 10_000)
    with torch.no_grad():
        out = model(x).outputs
    acc = [float((o.argmax(1) == y[:, t]).float().mean()) for t, o in enumerate(out)]
    # Chance is 0.1; test digits come from a pool no training image used.
    assert min(acc) > 0.5, acc


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50"])
def test_one_channel_resnets_take_grey_images(name: str) -> None:
    net, dim = build_gray_backbone(name)
    out = net.eval()(torch.zeros(2, 1, 32, 32))
    assert out.shape == (2, dim)
    with pytest.raises(ValueError, match="valid choices: lenet, resnet18"):
        build_gray_backbone("vgg")
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_gray_backbone("lenet", "imagenet")


def test_grey_stem_sums_the_rgb_kernels() -> None:
    """With copied RGB weights, a grey image gives the RGB network's answer to (g, g, g)."""
    import torchvision.models as tvm

    from mtlbench.mtl.gray_backbones import gray_resnet

    torch.manual_seed(0)
    rgb = tvm.resnet18().eval()
    gray, _ = gray_resnet("resnet18")
    state = {k: v for k, v in rgb.state_dict().items() if not k.startswith("fc.")}
    state["conv1.weight"] = rgb.conv1.weight.sum(dim=1, keepdim=True)
    gray.load_state_dict(state)
    g = torch.rand(2, 1, 32, 32)
    rgb.fc = torch.nn.Identity()
    assert torch.allclose(gray.eval()(g), rgb(g.expand(-1, 3, -1, -1)), atol=1e-5)
