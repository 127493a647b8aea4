"""HydraNet: one shared backbone, one small head per task, ONE backbone pass per batch.

The original tutorial called the backbone once per head (three passes per batch); sharing the
features is both the HydraNet idea and a 3x saving. ``forward`` returns the shared features as
well as the head outputs, because gradient-based weighting methods differentiate the task
losses with respect to that shared representation.
"""

from __future__ import annotations

import urllib.error
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torchvision.models as tvm
from torch import nn

from mtlbench.config import BACKBONES, ModelConfig
from mtlbench.infra.errors import UserError
from mtlbench.mtl.gray_backbones import build_gray_backbone
from mtlbench.mtl.tasks import Task


class WeightsError(UserError):
    """Pretrained weights could not be obtained or loaded; the message says what to do."""


class HydraOutput(NamedTuple):
    features: torch.Tensor  # [B, D], the shared representation
    outputs: tuple[torch.Tensor, ...]  # one per task, in task order


def _head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    # Linear-ReLU-Linear, as in the tutorial.
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)
    )


class TinyBackbone(nn.Module):
    """A few-thousand-parameter CNN for tests and quick smoke runs (``--backbone tiny``)."""

    feature_dim = 32

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build_backbone(name: str, weights: str, in_channels: int = 3) -> tuple[nn.Module, int]:
    """Return a torchvision backbone with its classifier removed, and its feature width;
    ``in_channels=1`` gives the one-channel variants (:mod:`mtlbench.mtl.gray_backbones`)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid choices: {', '.join(BACKBONES)}")
    if name == "tiny":
        if weights == "imagenet":
            raise WeightsError("the 'tiny' backbone has no ImageNet weights; use --weights none")
        return TinyBackbone(in_channels), TinyBackbone.feature_dim
    if in_channels == 1:
        try:
            return build_gray_backbone(name, weights)
        except ValueError as exc:
            raise WeightsError(str(exc)) from None
    if name == "lenet":
        raise WeightsError("the 'lenet' backbone takes one-channel images (e.g. multi-digits)")
    tv_weights = None
    if weights == "imagenet":
        tv_weights = tvm.get_model_weights(name).DEFAULT
    try:
        net = tvm.get_model(name, weights=tv_weights)
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        raise WeightsError(
            f"could not download ImageNet weights for {name} ({exc.__class__.__name__}: {exc}); "
            "this machine may be offline: use --weights none, or download the file elsewhere "
            "and pass --weights PATH"
        ) from exc
    if hasattr(net, "fc"):  # ResNets
        dim = net.fc.in_features
        net.fc = nn.Identity()
    else:  # MobileNetV3: keep the pooled 576-d features, drop the classifier MLP
        dim = net.classifier[0].in_features
        net.classifier = nn.Identity()
    return net, int(dim)


class HydraNet(nn.Module):
    def __init__(
        self, backbone: nn.Module, feature_dim: int, tasks: Sequence[Task], hidden: int = 512
    ) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        self.backbone = backbone
        self.heads = nn.ModuleList(_head(feature_dim, hidden, t.n_outputs) for t in self.tasks)

    def forward(self, x: torch.Tensor) -> HydraOutput:
        features = self.backbone(x)
        return HydraOutput(features, self.heads_forward(features))

    def heads_forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(head(features) for head in self.heads)

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.backbone.parameters() if p.requires_grad]

    def head_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.heads.parameters() if p.requires_grad]

    def init_output_bias(self, task_index: int, value: float) -> None:
        """Start a head's output at ``value``: a regression head at its constant predictor
        (e.g. UTKFace's age at the training median, 33 years instead of 0).

        Without it an L1 regression loss starts near 30 and swamps the other tasks for the
        first epoch, whatever the weighting; every strategy gets the same initialisation.
        """
        head = self.heads[task_index]
        assert isinstance(head, nn.Sequential)
        last = head[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.bias.fill_(value)


def _load_weights_file(model: HydraNet, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling/format problem is the user's file, reported plainly
        raise WeightsError(f"cannot load weights from {str(path)!r}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{str(path)!r} does not hold a state_dict")
    if any(k.startswith("backbone.") for k in state):
        target: nn.Module = model
        state = {k: v for k, v in state.items() if k.startswith(("backbone.", "heads."))}
        strict = any(k.startswith("heads.") for k in state)
    else:
        target, strict = model.backbone, False
        # A torchvision classification checkpoint carries the classifier we replaced.
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    missing, unexpected = target.load_state_dict(state, strict=False)
    if unexpected or (strict and missing) or (not strict and missing):
        raise WeightsError(
            f"weights in {str(path)!r} do not match the model: "
            f"{len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:2]})"
        )


def build_model(cfg: ModelConfig, tasks: Sequence[Task], in_channels: int = 3) -> HydraNet:
    weights = cfg.weights if cfg.weights in ("none", "imagenet") else "none"
    backbone, dim = build_backbone(cfg.backbone, weights, in_channels)
    model = HydraNet(backbone, dim, tasks, hidden=cfg.head_hidden)
    if cfg.weights not in ("none", "imagenet"):
        _load_weights_file(model, Path(cfg.weights))
    return model
