"""The toy as a model, for the gradient engine and for strategies that run the model themselves
(Auto-Lambda's look-ahead step): one shared parameter, the point ``x`` (``[1, 2]``, so GradNorm
finds a two-dimensional "last shared layer"), which is also the shared representation; no heads.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import nn

from mtlbench.toy.problem import Start


class PointOutput(NamedTuple):
    features: torch.Tensor  # [1, 2]: the point, as a non-leaf tensor like a backbone's output
    outputs: tuple[torch.Tensor, ...]  # the one "head output": the features themselves


class PointModel(nn.Module):
    def __init__(self, start: Start) -> None:
        super().__init__()
        self.point = nn.Parameter(torch.tensor([[start.x1, start.x2]], dtype=torch.float32))

    def forward(self, x: Any) -> PointOutput:
        features = self.point * 1.0
        return PointOutput(features, (features,))
