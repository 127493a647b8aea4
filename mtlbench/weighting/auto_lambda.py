"""Auto-Lambda (Liu, Li, Kuang, Davison & Johns, "Auto-Lambda: Disentangling Dynamic Task
Relationships", TMLR 2022).

The task weights ``lambda`` are meta-learned so that one training step with them lowers the
loss on *validation* data (paper eq. 3-4):
``theta' = theta - alpha grad_theta sum_t lambda_t L_t(theta; train)`` and
``lambda <- lambda - beta grad_lambda sum_t L_t(theta'; val)`` (every task is primary in the
multi-task setting), then the network takes its ordinary step on ``sum_t lambda_t L_t``.

Because ``theta'`` is linear in ``lambda``, the meta-gradient is exact without a Hessian:
``d L_val(theta') / d lambda_t = -alpha g_t(theta) . v`` with ``g_t`` task t's training gradient
of every trainable parameter and ``v = grad L_val(theta')``. The official code estimates the
same product by central finite differences (``eps = 0.01 / ||v||``, two more forward passes);
we compute it exactly (T backward passes). ``alpha`` is the network's current learning rate
(official); the virtual step is the paper's plain gradient step (the official code also folds
in the optimiser's SGD momentum and weight decay). The meta-optimiser is Adam with step
``meta_lr``, as in the official code.

Defaults: ``init = 0.1`` and ``meta_lr = 1e-4`` (official code, dense-prediction benchmarks;
its CIFAR script uses 3e-4). The weights are not constrained (official). Batch-norm running
statistics touched by the meta forward passes are restored, so only the real step moves them.
The validation batch comes from the trainer through :class:`StepContext`
(``needs_step_context``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.func import functional_call

from mtlbench.mtl.tasks import Task
from mtlbench.weighting.base import (
    GradientNeed,
    HyperParam,
    LossCombination,
    StepContext,
    Strategy,
)
from mtlbench.weighting.registry import register

_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


def meta_gradient(strategy_weights: torch.Tensor, context: StepContext) -> torch.Tensor:
    """``d/d lambda`` of the validation loss after one virtual step (float64, [T], CPU)."""
    model = context.model
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    saved = {n: b.detach().clone() for n, b in model.named_buffers()}
    try:
        x, y = context.train_batch
        losses = context.loss_fn(model(x).outputs, y)
        n_tasks = losses.shape[0]
        grads = []
        for t in range(n_tasks):
            row = torch.autograd.grad(
                losses[t], params, retain_graph=t < n_tasks - 1, allow_unused=True
            )
            grads.append(
                [torch.zeros_like(p) if g is None else g for g, p in zip(row, params, strict=True)]
            )
        lam = strategy_weights.detach().double().cpu().tolist()
        alpha = context.lr
        virtual = {}
        for i, (name, p) in enumerate(zip(names, params, strict=True)):
            step = sum(lam[t] * grads[t][i] for t in range(n_tasks))
            virtual[name] = (p.detach() - alpha * step).requires_grad_(True)
        xv, yv = context.validation_batch
        out = functional_call(model, virtual, (xv,), strict=False)
        val_loss = context.loss_fn(out.outputs, yv).sum()
        v = torch.autograd.grad(val_loss, [virtual[n] for n in names], allow_unused=True)
        result = torch.zeros(n_tasks, dtype=torch.float64)
        for t in range(n_tasks):
            dot = torch.zeros((), dtype=torch.float64, device=losses.device)
            for g, vi in zip(grads[t], v, strict=True):
                if vi is not None:
                    dot += (g.double() * vi.double()).sum()
            result[t] = -alpha * float(dot)
        return result
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(saved[name])


@register
class AutoLambda(Strategy):
    meta_weights: torch.Tensor  # buffer
    adam_m: torch.Tensor  # buffer
    adam_v: torch.Tensor  # buffer
    adam_step: torch.Tensor  # buffer
    name = "auto_lambda"
    needs = GradientNeed.LOSSES
    needs_step_context = True
    paper = "Liu, Li, Kuang, Davison & Johns, Auto-Lambda, TMLR 2022"
    summary = "weights meta-learned by one-step look-ahead on validation data"
    hparams = (
        HyperParam(
            "init", 0.1, "initial task weight", low=1e-3, high=10.0, log=True, searchable=False
        ),
        HyperParam(
            "meta_lr", 1e-4, "Adam step size of the task weights", low=1e-6, high=1e-1, log=True
        ),
    )

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        n = self.n_tasks
        init = float(self.config["init"])  # type: ignore[arg-type]
        self.register_buffer("meta_weights", torch.full((n,), init))
        self.register_buffer("adam_m", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("adam_v", torch.zeros(n, dtype=torch.float64))
        self.register_buffer("adam_step", torch.zeros((), dtype=torch.long))

    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        w = self.meta_weights.to(losses)
        return LossCombination((w * losses).sum(), w.detach().clone())

    def prepare_step(self, context: StepContext) -> None:
        self.adam(meta_gradient(self.meta_weights, context))

    @torch.no_grad()
    def adam(self, grad: torch.Tensor) -> None:
        """One Adam step (torch's defaults: betas 0.9/0.999, eps 1e-8) on the weights."""
        b1, b2 = _BETAS
        grad = grad.to(self.adam_m)
        self.adam_step += 1
        k = int(self.adam_step)
        self.adam_m.mul_(b1).add_(grad, alpha=1 - b1)
        self.adam_v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        m_hat = self.adam_m / (1 - b1**k)
        v_hat = self.adam_v / (1 - b2**k)
        lr = float(self.config["meta_lr"])  # type: ignore[arg-type]
        step = lr * m_hat / (v_hat.sqrt() + _ADAM_EPS)
        self.meta_weights.sub_(step.to(self.meta_weights))
