"""The gradient engine: one place that turns task losses into parameter gradients.

The trainer calls :func:`backward` once per step. Depending on what the strategy declares it
needs, the engine

* ``LOSSES``: back-propagates the strategy's combined loss (one ordinary backward);
* ``LAST_SHARED_LAYER``: computes the per-task gradients of the last shared layer's weight
  (:func:`last_shared_layer`), hands them with the losses to the strategy, and back-propagates
  the loss it returns (GradNorm);
* ``REPRESENTATION``: computes the per-task gradients of the shared features ``[T, B*D]`` (heads
  only), hands them to the strategy and back-propagates its combined feature gradient through
  the backbone once;
* ``SHARED_PARAMETERS``: computes the per-task gradients of every shared parameter and writes
  the strategy's combined gradient into ``.grad``. Strategies that weight from the Gramian
  (``weights_from_gramian``) get the T x T Gramian only, and the engine forms ``sum_t w_t g_t``
  in place, without ever concatenating the ``[T, m]`` Jacobian; strategies that keep
  gradient-sized state (``gradients_per_parameter``: DB-MTL) get the gradients parameter by
  parameter; the others get the matrix.

Strategies that declare ``samples_per_step = k > 1`` (double sampling) get losses ``[k, T]``
from :func:`forward_losses` (the batch split into k disjoint parts, one forward pass each); the
double-sampling engine (:mod:`.samples`) computes the blocks of their per-sample Gramian that the
strategy declares it reads, hands it to the strategy and forms the update it asks for.
Strategies that declare ``needs_step_context`` get :func:`prepare_step` before the step (a
validation batch).

Task heads of gradient methods receive the gradient of ``sum_t w_t L_t`` with the weights the
strategy returns (LibMTL feeds them the unweighted sum instead).

Per-task gradients come from :func:`task_gradients`, either with one batched backward
(``is_grads_batched``: the T cotangents ride through autograd as a batch) or with T sequential
backward passes that keep the graph (``retain_graph``). Which is faster depends on the device and
on how deep the backward goes; :data:`DEFAULT_MODE` holds the choice measured on the project's
CPU (see ``docs/strategies.md``) and ``mtlbench bench --strategies`` measures both again.
Nothing here names a device or a dtype: under bf16 autocast the features are bf16, the Jacobian
is kept in float32 and the combined feature gradient is cast back to the features' dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtlbench.mtl.tasks import TASKS, Task, task_losses
from mtlbench.training.jacobian import JACOBIAN_MODES as JACOBIAN_MODES
from mtlbench.training.jacobian import JacobianMode as JacobianMode
from mtlbench.training.jacobian import TaskGradients as TaskGradients
from mtlbench.training.jacobian import task_gradients as task_gradients
from mtlbench.training.jacobian import task_jacobian as task_jacobian
from mtlbench.training.samples import SampleLosses, sample_shared_gradients
from mtlbench.weighting.base import GradientNeed, StepContext, Strategy

# Measured on 2 CPU cores, ResNet18, batch 64, 32 px (docs/strategies.md, "Gradient engine"):
# for the shared parameters T sequential passes beat one batched pass (157 vs 165 ms per step
# with MGDA; 224 vs 270 ms for the plain Jacobian) and need less memory; for the representation
# and the last shared layer the two are within noise (64 vs 65 ms, 92 vs 92 ms).
DEFAULT_MODE: dict[GradientNeed, JacobianMode] = {
    GradientNeed.LAST_SHARED_LAYER: "batched",
    GradientNeed.REPRESENTATION: "batched",
    GradientNeed.SHARED_PARAMETERS: "sequential",
}


@dataclass(frozen=True)
class StepResult:
    weights: torch.Tensor  # [T], detached
    total_loss: torch.Tensor  # scalar, detached: the weighted objective, for logging


def last_shared_layer(shared_params: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    """The weight of the last shared layer: the last shared parameter with at least two
    dimensions (a conv or linear weight; biases and norm scales come after it in a ResNet's
    parameter order and are skipped). GradNorm measures its task-gradient norms here."""
    for p in reversed(list(shared_params)):
        if p.dim() >= 2:
            return [p]
    raise ValueError(
        "no shared parameter with >= 2 dimensions (a conv or linear weight) for GradNorm's "
        f"last shared layer; shapes: {[tuple(p.shape) for p in shared_params]}"
    )


def _split(vector: torch.Tensor, params: Sequence[nn.Parameter]) -> list[torch.Tensor]:
    out, offset = [], 0
    for p in params:
        out.append(vector[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    return out


def _backward_with_aux(loss: torch.Tensor, aux: torch.Tensor | None) -> None:
    (loss if aux is None else loss + aux).backward()


def _assign(params: Sequence[nn.Parameter], grads: Sequence[torch.Tensor | None]) -> None:
    for p, g in zip(params, grads, strict=True):
        if g is None:
            continue
        p.grad = g.detach() if p.grad is None else p.grad + g.detach()


def _heads_backward(
    losses: torch.Tensor,
    weights: torch.Tensor,
    head_params: Sequence[nn.Parameter],
    *,
    retain_graph: bool,
) -> torch.Tensor:
    total = (weights.to(device=losses.device, dtype=losses.dtype).detach() * losses).sum()
    grads = torch.autograd.grad(
        total, list(head_params), retain_graph=retain_graph, allow_unused=True
    )
    _assign(head_params, grads)
    return total.detach()


def forward_losses(
    strategy: Strategy,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    tasks: Sequence[Task] = TASKS,
) -> tuple[torch.Tensor, torch.Tensor | SampleLosses]:
    """``(features, losses)`` for :func:`backward`: one forward pass and ``[T]`` batch losses,
    or, for a strategy with ``samples_per_step = k``, the :class:`SampleLosses` of k disjoint,
    consecutive parts of the (shuffled) batch, each with its own forward pass: k independent
    samples (batch norm sees each part alone), and each part's backward passes traverse only
    its own graph (one forward over the whole batch would make every one of the kT backward
    passes cost a full-batch backward). Part sizes differ by at most one image."""
    k = strategy.samples_per_step
    if k == 1:
        out = model(x)
        return out.features, task_losses(out.outputs, y, tasks)
    n = y.shape[0]
    if n < k:
        raise ValueError(
            f"strategy {strategy.name!r} splits each batch into {k} samples; a batch of {n} "
            f"is too small (batch_size must be at least {k})"
        )
    outs = [model(part) for part in torch.tensor_split(x, k)]
    labels = torch.tensor_split(y, k)
    parts = tuple(task_losses(o.outputs, part, tasks) for o, part in zip(outs, labels, strict=True))
    return torch.cat([o.features for o in outs]), SampleLosses(parts)


def mean_losses(losses: torch.Tensor | SampleLosses) -> torch.Tensor:
    """``[T]``: the batch losses for logging (the mean over samples of per-sample losses)."""
    return losses.mean() if isinstance(losses, SampleLosses) else losses


def prepare_step(
    strategy: Strategy,
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    validation_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    lr: float,
    tasks: Sequence[Task] = TASKS,
) -> None:
    """Run the strategy's :meth:`~Strategy.prepare_step` when it declares
    ``needs_step_context``; ``validation_batch`` is called only then."""
    if not strategy.needs_step_context:
        return

    def loss_fn(outputs: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return task_losses(outputs, labels, tasks)

    strategy.prepare_step(StepContext(model, loss_fn, batch, validation_batch(), lr))


def _sample_backward(
    strategy: Strategy,
    losses: torch.Tensor | SampleLosses,
    shared_params: Sequence[nn.Parameter],
    head_params: Sequence[nn.Parameter],
    mode: JacobianMode,
) -> StepResult:
    k, n = strategy.samples_per_step, strategy.n_tasks
    if strategy.needs is not GradientNeed.SHARED_PARAMETERS:
        raise ValueError(
            f"strategy {strategy.name!r}: samples_per_step > 1 needs SHARED_PARAMETERS, "
            f"not {strategy.needs.name}"
        )
    if not isinstance(losses, SampleLosses) or tuple(losses.shape) != (k, n):
        raise ValueError(
            f"strategy {strategy.name!r} takes [{k}, {n}] per-sample losses (see forward_losses), "
            f"got shape {tuple(losses.shape)}"
        )
    shared_grads, result = sample_shared_gradients(strategy, losses, shared_params, mode)
    total = _heads_backward(losses.mean(), result.weights, head_params, retain_graph=False)
    for p, g in zip(shared_params, shared_grads, strict=True):
        g = g.to(p.dtype)
        p.grad = g if p.grad is None else p.grad + g
    return StepResult(result.weights.detach().to(total.device), total)


def backward(
    strategy: Strategy,
    losses: torch.Tensor | SampleLosses,
    features: torch.Tensor,
    shared_params: Sequence[nn.Parameter],
    head_params: Sequence[nn.Parameter],
    *,
    mode: JacobianMode | None = None,
) -> StepResult:
    """Accumulate gradients into ``.grad`` of every trainable parameter for one step.

    ``mode`` overrides :data:`DEFAULT_MODE` (the benchmark compares both).
    """
    need = strategy.needs
    if strategy.samples_per_step > 1:
        return _sample_backward(
            strategy, losses, shared_params, head_params, mode or DEFAULT_MODE[need]
        )
    if isinstance(losses, SampleLosses):
        raise ValueError(
            f"strategy {strategy.name!r} takes [T] batch losses, got per-sample losses of shape "
            f"{losses.shape} (it declares samples_per_step = 1)"
        )
    if need is GradientNeed.LOSSES:
        combo = strategy.combine_losses(losses)
        _backward_with_aux(combo.loss, combo.aux_loss)
        return StepResult(combo.weights.detach(), combo.loss.detach())
    mode = mode or DEFAULT_MODE[need]
    if need is GradientNeed.LAST_SHARED_LAYER:
        jac = task_jacobian(losses, last_shared_layer(shared_params), mode=mode)
        combo = strategy.combine_losses_with_gradients(losses, jac)
        del jac
        _backward_with_aux(combo.loss, combo.aux_loss)
        return StepResult(combo.weights.detach(), combo.loss.detach())
    if need is GradientNeed.REPRESENTATION:
        jac = task_jacobian(losses, [features], mode=mode)
        grad_combo = strategy.combine_gradients(jac, losses.detach(), features=features.detach())
        del jac
        total = _heads_backward(losses, grad_combo.weights, head_params, retain_graph=True)
        features.backward(grad_combo.gradient.view_as(features).to(features.dtype))
        if grad_combo.aux_loss is not None:
            grad_combo.aux_loss.backward()
        return StepResult(grad_combo.weights.detach(), total)
    if need is GradientNeed.SHARED_PARAMETERS:
        per_task = task_gradients(losses, shared_params, mode=mode)
        aux = None
        if strategy.weights_from_gramian:
            # Gramian strategies never see the [T, m] matrix: no concatenation copy.
            weights = strategy.gramian_weights(per_task.gramian(), losses.detach())
            shared_grads = per_task.combine(weights)
        elif strategy.gradients_per_parameter:
            shared_grads, weights = strategy.combine_parameter_gradients(
                per_task.float_rows(), losses.detach()
            )
        else:
            jac = per_task.matrix()
            grad_combo = strategy.combine_gradients(jac, losses.detach())
            del jac
            weights, aux = grad_combo.weights, grad_combo.aux_loss
            shared_grads = _split(grad_combo.gradient, shared_params)
        del per_task
        total = _heads_backward(losses, weights, head_params, retain_graph=False)
        for p, g in zip(shared_params, shared_grads, strict=True):
            g = g.to(p.dtype)
            p.grad = g if p.grad is None else p.grad + g
        if aux is not None:
            aux.backward()
        return StepResult(weights.detach().to(losses.device), total)
    raise ValueError(f"unsupported gradient need {need!r}")
