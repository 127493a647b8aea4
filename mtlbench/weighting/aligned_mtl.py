"""Aligned-MTL-UB (Senushkin et al., "Independent Component Alignment for Multi-Task Learning",
CVPR 2023): Aligned-MTL on the shared representation (the paper's "-UB" form).

With ``G = J J^T = V diag(lambda) V^T`` (J: task gradients w.r.t. the representation, rank r,
eigenvalues sorted and truncated to the non-zero ones), the aligned gradients are
``J_hat = sqrt(lambda_min) * V diag(lambda)^(-1/2) V^T J``: the task directions are made
orthogonal with equal norms ``sqrt(lambda_min)`` (condition number 1). The update is
``d = J_hat^T w`` with task weights ``w = 1`` (the official code's ``B.sum(0)``; torchjd's
default pref vector is 1/T, T times smaller), i.e. effective weights
``a = sqrt(lambda_min) V diag(lambda)^(-1/2) V^T 1`` (reported).

Wrapped torchjd: ``AlignedMTLWeighting(pref_vector=1, scale_mode="min")`` on the Gramian in
float64 (in float32 its weights were 100% off when gradient norms spanned 1e-3..1e3; in float64
they agree with an independent eigendecomposition). Two opposite rows give weights (0, 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtlbench.mtl.tasks import Task
from mtlbench.weighting.base import GradientNeed, Strategy
from mtlbench.weighting.registry import register


@register
class AlignedMTL(Strategy):
    name = "aligned_mtl"
    needs = GradientNeed.REPRESENTATION
    paper = "Senushkin et al., CVPR 2023 (Aligned-MTL-UB)"
    summary = "task gradients aligned to an orthogonal, equal-norm system"
    weights_from_gramian = True

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        from torchjd.aggregation import AlignedMTLWeighting  # lazy: 0.65 s, paid only when used

        ones = torch.ones(self.n_tasks, dtype=torch.float64)
        self.solver = AlignedMTLWeighting(pref_vector=ones, scale_mode="min")

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        return self.solver(gram).float()
