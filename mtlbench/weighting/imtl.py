"""Impartial Multi-Task Learning, IMTL (Liu et al., ICLR 2021): IMTL-H on the representation.

IMTL-G (gradient balance): with task gradients ``g_t`` w.r.t. the shared representation and
unit vectors ``u_t = g_t / ||g_t||``, find the combination ``d = sum_t a_t g_t`` with
``sum_t a_t = 1`` whose projections onto every ``u_t`` are equal: ``D G a = lambda 1`` with
``D = diag(1 / ||g_t||)``, ``1^T a = 1``. Solved as that system, scale-free: with ``a = D y``
and the unit-diagonal ``C = D G D``, ``C y = lambda 1``.

* Rows linearly independent (``C`` non-singular at tolerance 1e-10): the unique solution
  ``a = D C^-1 1 / (1^T D C^-1 1)``, the paper's closed form.
* Rows linearly dependent (exact rank deficiency, duplicated directions, opposite rows of any
  norms): ``d = 0`` whenever it solves the system (``a`` in the null space of ``G`` with
  ``1^T a = 1``; reported ``a`` is the least-norm such vector, in the unit-diagonal scaling).
  For generic dependent rows it is the only solution, and the limit of the full-rank solution
  as the rows become dependent. torchjd's pseudo-inverse formula ``a = G^+ n / (1^T G^+ n)``
  (used here before) returns weights like (-1, 2) for ``g1 = -2 g0``: an update that increases
  task 0's loss, with unequal projections. If ``d = 0`` does not solve it, the remaining
  solution is taken from the least-squares solve of the system; when the system has no solution
  at all, the fallback is ``d = 0`` with weights 0, counted in ``diagnostics()``.
* A zero task gradient has no unit vector: it gets weight 0 and no equation.

IMTL-L (loss balance): learned scales ``s_t`` (initialised at 0); the scaled losses are
``exp(s_t) L_t`` and ``s`` descends ``sum_t (exp(s_t) L_t - s_t)`` (gradient ``exp(s_t) L_t - 1``),
so at equilibrium every scaled loss is 1. The scales have their own optimiser group
(``weight_lr``, default 0.025): the paper gives no lr for them and no official code was
released (LibMTL trains them with the network's optimiser); 0.025 is the learned-weight lr of
the Nash-MTL and FAMO official code. With Adam at the network's lr (3e-4) ``s`` moves ~0.1 in
300 steps, while the equilibrium ``s* = -log L_t`` is ~-2 for an L1 age loss of ~8 years.

IMTL-H (hybrid, the paper's best variant and the default, ``variant=hybrid``): IMTL-G applied to
the gradients of the scaled losses, so the effective weight of task t on the raw loss is
``a_t * exp(s_t)`` (reported). ``variant=gradient`` is IMTL-G alone on the representation.

Native float64, not torchjd's ``IMTLGWeighting`` (measured: in float32 100% off when gradient
norms span 1e-3..1e3; in float64 the (-1, 2) answer above on opposite rows of unequal norm).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mtlbench.mtl.tasks import Task
from mtlbench.weighting._linalg import RANK_TOL, gramian, zero_rows
from mtlbench.weighting.base import (
    GradientCombination,
    GradientNeed,
    HyperParam,
    Strategy,
    weight_lr_param,
)
from mtlbench.weighting.registry import register


def imtl_g_weights(gram: np.ndarray) -> tuple[np.ndarray, bool]:
    """IMTL-G weights for a float64 Gramian and whether the update is exactly ``d = 0``;
    None instead of weights when the defining system has no solution."""
    g = 0.5 * (np.asarray(gram, dtype=np.float64) + np.asarray(gram, dtype=np.float64).T)
    n = len(g)
    live = np.flatnonzero(~zero_rows(g))
    weights = np.zeros(n)
    if len(live) == 0:
        return weights, True
    scale = 1.0 / np.sqrt(np.diag(g)[live])
    unit = g[np.ix_(live, live)] * scale[:, None] * scale[None, :]
    values, vectors = np.linalg.eigh(unit)  # unit diagonal: absolute = relative accuracy
    null = values <= RANK_TOL * len(live)
    if not null.any():
        y = np.linalg.solve(unit, np.ones(len(live)))
        total = float(scale @ y)
        if total == 0.0:
            return weights * np.nan, False
        weights[live] = scale * y / total
        return weights, False
    # a = D N z spans the null space of G; 1^T a = (N^T D 1) . z
    basis = vectors[:, null]
    w = basis.T @ scale
    if float(w @ w) > RANK_TOL:
        weights[live] = scale * (basis @ (w / float(w @ w)))
        return weights, True
    # d = 0 is no solution: least squares on [D G, -1; 1^T, 0] [a; lambda] = [0; 1]
    k = len(live)
    system = np.zeros((k + 1, k + 1))
    system[:k, :k] = unit
    system[:k, k] = -1.0
    system[k, :k] = scale
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    sol = np.linalg.lstsq(system, rhs, rcond=RANK_TOL)[0]
    if np.abs(system @ sol - rhs).max() > 1e-8:
        return weights * np.nan, False
    weights[live] = scale * sol[:k]
    return weights, False


@register
class IMTL(Strategy):
    name = "imtl"
    needs = GradientNeed.REPRESENTATION
    paper = "Liu et al., ICLR 2021 (IMTL-H on the representation)"
    summary = "equal projections on unit task gradients + learned loss scales"
    hparams = (
        HyperParam(
            "variant",
            "hybrid",
            "hybrid = IMTL-H (IMTL-G + IMTL-L), gradient = IMTL-G only",
            kind="str",
            choices=("hybrid", "gradient"),
            searchable=False,
        ),
        weight_lr_param(0.025, "none published; the Nash-MTL/FAMO code's weight lr"),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.hybrid = self.config["variant"] == "hybrid"
        self.log_scales = nn.Parameter(torch.zeros(self.n_tasks), requires_grad=self.hybrid)
        self.track_solver()
        self.remember_learned_start()

    def combine_gradients(
        self,
        jacobian: torch.Tensor,
        losses: torch.Tensor,
        *,
        features: torch.Tensor | None = None,
    ) -> GradientCombination:
        scale = torch.exp(self.log_scales.detach()).double().cpu()
        gram = gramian(jacobian) * scale[:, None] * scale[None, :]
        alpha, zero = imtl_g_weights(gram.numpy())
        failed = bool(np.isnan(alpha).any())
        self.record_step(failed=failed, fallback=False)
        if failed:  # no solution: the documented fallback d = 0
            alpha, zero = np.zeros(self.n_tasks), True
        weights = (torch.as_tensor(alpha) * scale).float().to(jacobian.device)
        aux = None
        if self.hybrid:
            s = self.log_scales
            aux = (torch.exp(s) * losses.detach().to(s) - s).sum()
        direction = jacobian.new_zeros(jacobian.shape[1]) if zero else weights @ jacobian
        return GradientCombination(direction, weights, aux_loss=aux)

    def learned_weights(self) -> torch.Tensor | None:
        return torch.exp(self.log_scales.detach().float()) if self.hybrid else None
