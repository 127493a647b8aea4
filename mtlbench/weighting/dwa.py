"""Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019, eq. 7).

``w_k(t) = K * exp(r_k(t-1) / T) / sum_i exp(r_i(t-1) / T)`` with
``r_k(t-1) = L_k(t-1) / L_k(t-2)``, where ``L_k`` are epoch means of the unweighted training
losses, ``K`` the number of tasks and ``T = 2`` the temperature. Weights are 1 for the first
two epochs (t = 0, 1), when the ratio is not yet defined. (One public implementation is shifted
by an epoch; this one follows the paper.) The loss history is a buffer, so it is checkpointed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtlbench.mtl.tasks import Task
from mtlbench.weighting.base import GradientNeed, HyperParam, LossCombination, Strategy
from mtlbench.weighting.registry import register


@register
class DWA(Strategy):
    history: torch.Tensor  # buffer
    n_epochs: torch.Tensor  # buffer
    weights: torch.Tensor  # buffer
    name = "dwa"
    needs = GradientNeed.LOSSES
    paper = "Liu, Johns & Davison, CVPR 2019"
    summary = "softmax of epoch-to-epoch loss ratios"
    hparams = (
        HyperParam("temperature", 2.0, "softmax temperature T", low=0.05, high=100.0, log=True),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        # history[0] = L(t-2), history[1] = L(t-1); n_epochs counts completed epochs.
        self.register_buffer("history", torch.zeros(2, self.n_tasks, dtype=torch.float64))
        self.register_buffer("n_epochs", torch.zeros((), dtype=torch.long))
        self.register_buffer("weights", torch.ones(self.n_tasks))

    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        w = self.weights.to(losses.dtype)
        return LossCombination((w * losses).sum(), w.detach().clone())

    def on_epoch_end(self, epoch: int, train_losses: torch.Tensor) -> None:
        self.history[0] = self.history[1]
        self.history[1] = train_losses.detach().to(self.history)
        self.n_epochs += 1
        if int(self.n_epochs) >= 2:
            ratio = self.history[1] / self.history[0].clamp_min(1e-12)
            temperature = float(self.config["temperature"])  # type: ignore[arg-type]
            w = self.n_tasks * torch.softmax(ratio / temperature, dim=0)
            self.weights.copy_(w.to(self.weights.dtype))
