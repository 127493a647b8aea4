"""Backbones for one-channel images (multi-digits): a LeNet and the ResNets with a grey stem.

``lenet`` is the shared part of the LeNet that Sener & Koltun (NeurIPS 2018) use on MultiMNIST:
conv 5x5 (10) - max-pool 2 - ReLU - conv 5x5 (20) - max-pool 2 - ReLU - fully connected to a
50-wide representation (ReLU). Their images are 28 px; an adaptive pooling to 4 x 4 before the
fully connected layer keeps the 320 inputs at every image size (at 28 px it is the identity).

The ResNets (``resnet18`` / ``resnet34`` / ``resnet50``) are torchvision's with the first
convolution taking one channel. With ImageNet weights that convolution's kernel is the sum of
the RGB kernels, so a grey image ``g`` gives the response the RGB network gives to ``(g, g, g)``.
"""

from __future__ import annotations

import torch
from torch import nn

GRAY_BACKBONES: tuple[str, ...] = ("lenet", "resnet18", "resnet34", "resnet50")


class LeNet(nn.Module):
    feature_dim = 50

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 10, 5),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.Conv2d(10, 20, 5),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),
            nn.AdaptiveMaxPool2d(4),
            nn.Flatten(),
            nn.Linear(320, self.feature_dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def gray_resnet(name: str, weights: str = "none") -> tuple[nn.Module, int]:
    """A torchvision ResNet whose stem takes one channel; its classifier replaced by identity."""
    import torchvision.models as tvm

    if name not in GRAY_BACKBONES[1:]:
        raise ValueError(
            f"unknown one-channel ResNet {name!r}; valid choices: {', '.join(GRAY_BACKBONES[1:])}"
        )
    if weights not in ("none", "imagenet"):
        raise ValueError(f"weights={weights!r}: valid choices are none, imagenet")
    tv_weights = tvm.get_model_weights(name).DEFAULT if weights == "imagenet" else None
    net = tvm.get_model(name, weights=tv_weights)
    old = net.conv1
    stem = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    with torch.no_grad():
        stem.weight.copy_(old.weight.sum(dim=1, keepdim=True))
    net.conv1 = stem
    dim = int(net.fc.in_features)
    net.fc = nn.Identity()
    return net, dim


def build_gray_backbone(name: str, weights: str = "none") -> tuple[nn.Module, int]:
    if name == "lenet":
        if weights != "none":
            raise ValueError("the 'lenet' backbone has no pretrained weights; use --weights none")
        return LeNet(1), LeNet.feature_dim
    if name not in GRAY_BACKBONES:
        raise ValueError(
            f"unknown backbone {name!r} for one-channel images; valid choices: "
            f"{', '.join(GRAY_BACKBONES)}"
        )
    return gray_resnet(name, weights)
