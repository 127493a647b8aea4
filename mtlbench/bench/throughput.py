"""Benchmarks kept out of the training path: mtlbench's model against the tutorial's.

``TutorialHydraNet`` is a faithful re-implementation of the original article's model: the
backbone runs once per head (three times per batch), gender goes through ``sigmoid`` +
``BCELoss``, and the optimiser is ``SGD(lr=1e-4, momentum=0.09)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from mtlbench.config import ModelConfig, TrainConfig
from mtlbench.mtl.model import build_backbone, build_model
from mtlbench.mtl.tasks import TASKS, random_batch, task_losses
from mtlbench.training.loop import make_optimizer


class TutorialHydraNet(nn.Module):
    def __init__(self, backbone: str = "resnet18") -> None:
        super().__init__()
        self.net, dim = build_backbone(backbone, "none")
        self.age = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        self.gender = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 1))
        self.race = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 5))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # As in the article: one backbone call per head.
        return self.age(self.net(x)), self.gender(self.net(x)), self.race(self.net(x))


@dataclass(frozen=True)
class ThroughputRow:
    variant: str
    img_s: float
    step_ms: float


Step = Callable[[], None]
BatchStep = Callable[[torch.Tensor, torch.Tensor], None]


def _time_steps(step: Step, steps: int, warmup: int, sync: bool) -> float:
    for _ in range(warmup):
        step()
    if sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if sync:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def tutorial_trainer(
    backbone: str, device: torch.device
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """The article's training step as a function of one batch: three backbone passes,
    sigmoid + BCELoss, SGD(1e-4, momentum 0.09). ``y`` is ``[B, 3]`` (age, gender, race)."""
    model = TutorialHydraNet(backbone).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.09)
    l1, bce, ce = nn.L1Loss(), nn.BCELoss(), nn.CrossEntropyLoss()

    def train_on(x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad()
        age, gender, race = model(x)
        loss = (
            l1(age.squeeze(1), y[:, 0].float())
            + bce(torch.sigmoid(gender.squeeze(1)), y[:, 1].float())
            + ce(race, y[:, 2])
        )
        loss.backward()
        opt.step()

    return train_on


def _tutorial_step(backbone: str, x: torch.Tensor, y: torch.Tensor) -> Step:
    """The article's step on one fixed batch."""
    train_on = tutorial_trainer(backbone, x.device)
    return lambda: train_on(x, y)


def _mtlbench_step(backbone: str, x: torch.Tensor, y: torch.Tensor, channels_last: bool) -> Step:
    """mtlbench's step: one shared pass, its own losses, the trainer's (fused AdamW) optimiser."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(ModelConfig(backbone=backbone), TASKS).to(x.device).to(memory_format=fmt)
    xb = x.contiguous(memory_format=fmt)
    from mtlbench import weighting

    opt = make_optimizer(TrainConfig(), 1e-3, model, weighting.create("sum", TASKS))

    def step() -> None:
        opt.zero_grad()
        out = model(xb)
        loss = task_losses(out.outputs, y).sum()
        loss.backward()
        opt.step()

    return step


def model_throughput(
    *,
    backbone: str = "resnet18",
    batch_size: int = 64,
    image_size: int = 32,
    steps: int = 20,
    warmup: int = 3,
    device: torch.device | None = None,
) -> list[ThroughputRow]:
    """Training-step throughput (forward, backward, optimiser) on one fixed random batch."""
    device = device or torch.device("cpu")
    torch.manual_seed(0)  # model initialisation
    x, y = (t.to(device) for t in random_batch(batch_size, image_size))
    sync = device.type == "cuda"
    variants: list[tuple[str, Step]] = [
        ("tutorial: 3 backbone passes", _tutorial_step(backbone, x, y)),
        ("mtlbench: 1 pass", _mtlbench_step(backbone, x, y, channels_last=False)),
        ("mtlbench: 1 pass + channels_last", _mtlbench_step(backbone, x, y, channels_last=True)),
    ]
    rows = []
    for label, step in variants:
        sec = _time_steps(step, steps, warmup, sync)
        rows.append(ThroughputRow(label, batch_size / sec, sec * 1e3))
    return rows


def throughput_table(rows: list[ThroughputRow]) -> str:
    base = rows[0].img_s
    lines = [f"{'variant':38s} {'img/s':>8s} {'ms/step':>8s} {'vs tutorial':>11s}"]
    lines += [
        f"{r.variant:38s} {r.img_s:8.1f} {r.step_ms:8.1f} {r.img_s / base:10.2f}x" for r in rows
    ]
    return "\n".join(lines)
