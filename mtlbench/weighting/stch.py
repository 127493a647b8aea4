"""Smooth Tchebycheff scalarisation, STCH (Lin, Zhang, Yang, Zhang, Zhang, Liu & Kwong,
"Smooth Tchebycheff Scalarization for Multi-Objective Optimization", ICML 2024).

The paper's scalarisation (eq. 7) smooths ``max_t lambda_t (f_t - z_t)`` with a log-sum-exp of
smoothing ``mu``: ``g_mu(f) = mu log sum_t exp(lambda_t (f_t - z_t) / mu)``. Its multi-task
recipe (official STCH_MTL code, as in LibMTL) uses log losses normalised by a nadir point and
equal preferences: ``L = T * mu * log sum_t exp(log(L_t / n_t) / mu)``, where ``n_t`` is the
epoch-mean training loss of task t over the last warm-up epoch; during the ``warmup_epochs``
warm-up epochs the network descends ``sum_t log L_t`` (the ideal point z is 0 in log space).

Defaults ``mu = 1``, ``warmup_epochs = 4`` (official code and LibMTL). The epoch-mean losses
arrive through ``on_epoch_end`` (they are exactly the mean of the per-batch losses that LibMTL
accumulates). The reported weight of task t is ``dL / dL_t``: ``1 / L_t`` in warm-up, then
``T * softmax(log(L / n) / mu)_t / L_t``. Losses are offset by 1e-20 inside the log (official).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtlbench.mtl.tasks import Task
from mtlbench.weighting.base import GradientNeed, HyperParam, LossCombination, Strategy
from mtlbench.weighting.registry import register

_EPS = 1e-20


@register
class STCH(Strategy):
    nadir: torch.Tensor  # buffer
    epochs_seen: torch.Tensor  # buffer
    name = "stch"
    needs = GradientNeed.LOSSES
    paper = "Lin et al., Smooth Tchebycheff Scalarization, ICML 2024"
    summary = "log-sum-exp (smooth max) of nadir-normalised log losses"
    hparams = (
        HyperParam("mu", 1.0, "smoothing of the Tchebycheff max", low=0.01, high=10.0, log=True),
        HyperParam(
            "warmup_epochs",
            4,
            "epochs of sum log L before the nadir point is fixed",
            kind="int",
            low=0,
            high=100,
            searchable=False,
        ),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.register_buffer("nadir", torch.zeros(self.n_tasks))  # 0: not fixed yet
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        logs = torch.log(losses + _EPS)
        if not bool((self.nadir > 0).all()):
            return LossCombination(logs.sum(), (1.0 / (losses.detach() + _EPS)))
        mu = float(self.config["mu"])  # type: ignore[arg-type]
        scaled = (logs - torch.log(self.nadir.to(logs))) / mu
        loss = self.n_tasks * mu * torch.logsumexp(scaled, dim=0)
        weights = self.n_tasks * torch.softmax(scaled.detach(), dim=0) / (losses.detach() + _EPS)
        return LossCombination(loss, weights)

    def on_epoch_end(self, epoch: int, train_losses: torch.Tensor) -> None:
        # counted here, not from ``epoch``: a resumed run restores the count from state_dict
        if int(self.epochs_seen) == int(self.config["warmup_epochs"]):  # type: ignore[arg-type]
            self.nadir.copy_(train_losses.to(self.nadir).clamp_min(_EPS))
        self.epochs_seen += 1
