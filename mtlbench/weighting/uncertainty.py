"""Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

Each task learns ``s_t = log sigma_t^2`` (initialised at 0) and the objective is

* regression, Gaussian likelihood (paper eq. 5):     ``0.5 * exp(-s) * L + 0.5 * s``
* classification, softmax/sigmoid (paper eq. 10):    ``exp(-s) * L + 0.5 * s``

The age loss here is L1, i.e. a Laplace rather than Gaussian likelihood. The default applies
the paper's Gaussian regression form to it (as most public implementations do);
``regression_form=laplace`` uses the Laplace negative log-likelihood instead, ``exp(-s) * L + s``
with ``s = log b`` the log scale. The reported weight of a task is the multiplier its loss
actually receives (``0.5*exp(-s)`` or ``exp(-s)``); some libraries report ``exp(-s)`` for every
task, a factor 2 apart for regression.

The log-variances have their own optimiser group (``weight_lr``, default 0.025 with the run's
optimiser, Adam(W) by default): Kendall et al. published no training code; 0.025 is the
``--method-params-lr`` of the Nash-MTL official code (Navon et al., ICML 2022,
``experiments/utils.py``), whose help text says it is for uncertainty weighting (FAMO's official
code keeps it). With Adam a parameter moves by about its lr per step, so at the network's lr
(3e-4) ``s`` moves ~0.1 in 300 steps while the age equilibrium ``s* = log L_age`` is ~2-3.
At equilibrium (``d/ds = 0``) every task's weight is ``1 / (2 L_t)`` in both forms
(Gaussian regression: ``0.5 exp(-s) = 0.5 / L``; classification: ``exp(-s) = 1 / (2L)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mtlbench.mtl.tasks import Task
from mtlbench.weighting.base import (
    GradientNeed,
    HyperParam,
    LossCombination,
    Strategy,
    weight_lr_param,
)
from mtlbench.weighting.registry import register


@register
class Uncertainty(Strategy):
    loss_coef: torch.Tensor  # buffer
    reg_coef: torch.Tensor  # buffer
    name = "uncertainty"
    needs = GradientNeed.LOSSES
    paper = "Kendall, Gal & Cipolla, CVPR 2018"
    summary = "learned log-variances: c*exp(-s)*L + r*s"
    hparams = (
        HyperParam(
            "regression_form",
            "gaussian",
            "likelihood for regression tasks",
            kind="str",
            choices=("gaussian", "laplace"),
            searchable=False,
        ),
        HyperParam("init_log_var", 0.0, "initial s_t = log sigma_t^2", low=-5.0, high=5.0),
        weight_lr_param(0.025, "Nash-MTL official code's --method-params-lr (uncertainty)"),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        init = float(self.config["init_log_var"])  # type: ignore[arg-type]
        self.log_vars = nn.Parameter(torch.full((self.n_tasks,), init))
        laplace = self.config["regression_form"] == "laplace"
        loss_coef, reg_coef = [], []
        for t in self.tasks:
            if t.kind == "regression":
                loss_coef.append(1.0 if laplace else 0.5)
                reg_coef.append(1.0 if laplace else 0.5)
            else:
                loss_coef.append(1.0)
                reg_coef.append(0.5)
        self.register_buffer("loss_coef", torch.tensor(loss_coef))
        self.register_buffer("reg_coef", torch.tensor(reg_coef))
        self.remember_learned_start()

    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        s = self.log_vars.float()
        weights = self.loss_coef * torch.exp(-s)
        loss = (weights * losses).sum() + (self.reg_coef * s).sum()
        return LossCombination(loss, weights.detach())

    def learned_weights(self) -> torch.Tensor:
        return (self.loss_coef * torch.exp(-self.log_vars.detach().float())).detach()
