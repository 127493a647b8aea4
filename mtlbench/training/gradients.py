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
engine computes the gradients of all kT losses, hands the strategy their Gramian and forms the
update it asks for. Strategies that declare ``needs_step_context`` get :func:`prepare_step`
before the step (a validation batch).

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
from typing import Literal

import torch
from torch import nn

from mtlbench.mtl.tasks import TASKS, Task, task_losses
from mtlbench.weighting.base import GradientNeed, StepContext, Strategy

JacobianMode = Literal["batched", "sequential"]
JACOBIAN_MODES: tuple[JacobianMode, ...] = ("batched", "sequential")

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


@dataclass(frozen=True)
class TaskGradients:
    """Per-task gradients of a list of inputs, kept as the tensors autograd returned.

    ``rows[t][p]`` is the gradient of task t's loss w.r.t. input p, shaped like the input. Not
    concatenating them into a ``[T, m]`` matrix saves a copy of T x m floats per step (57 ms of
    a 230 ms step on ResNet18 / 2 CPU cores): Gramian strategies only need :meth:`gramian` and
    :meth:`combine`; :meth:`matrix` builds the Jacobian for the strategies that need it.
    """

    rows: tuple[tuple[torch.Tensor, ...], ...]
    # The batched backward's ``[T, *input.shape]`` result when there is a single input: then
    # :meth:`matrix` is a view of it instead of a copy (GradNorm's 2.4M-wide layer: 11 ms).
    block: torch.Tensor | None = None

    def gramian(self) -> torch.Tensor:
        """``J J^T`` as float64 on the CPU: one float32 dot product per task pair and input
        (torch's BLAS dot; measured 3e-7 of ``|g_i| |g_j|`` off the float64 value on ResNet18,
        the size of the gradients' own float32 rounding), summed over inputs in float64."""
        n = len(self.rows)
        out = torch.zeros(n, n, dtype=torch.float64, device=self.rows[0][0].device)
        for p in range(len(self.rows[0])):
            flat = _flatten_alike([row[p] for row in self.rows])
            for i in range(n):
                for j in range(i, n):
                    value = torch.dot(flat[i], flat[j]).double()
                    out[i, j] += value
                    if i != j:
                        out[j, i] += value
        return out.cpu()

    def combine(self, weights: torch.Tensor) -> list[torch.Tensor]:
        """``sum_t w_t rows[t][p]`` for every input p, accumulated in place into task 0's
        tensors (no new T x m allocation): call it last, after :meth:`gramian`."""
        w = weights.detach().double().cpu().tolist()
        acc = [g if g.dtype == torch.float32 else g.float() for g in self.rows[0]]
        torch._foreach_mul_(acc, w[0])
        for t in range(1, len(self.rows)):
            torch._foreach_add_(acc, [g.float() for g in self.rows[t]], alpha=w[t])
        return acc

    def float_rows(self) -> tuple[tuple[torch.Tensor, ...], ...]:
        """The rows as float32 (no copy when they already are)."""
        return tuple(
            tuple(g if g.dtype == torch.float32 else g.float() for g in r) for r in self.rows
        )

    def matrix(self) -> torch.Tensor:
        """The ``[T, m]`` float32 Jacobian (rows flattened and concatenated: a copy, except
        for a single input's batched result, which is only reshaped)."""
        if self.block is not None and self.block.dtype == torch.float32:
            return self.block.reshape(len(self.rows), -1)
        return torch.stack([torch.cat([g.reshape(-1).float() for g in row]) for row in self.rows])


def _flatten_alike(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Flatten tensors of one shape in one common element order, as float32, copying only when
    the memory layout requires it (a channels_last weight gradient is flattened in its storage
    order, so no copy, as long as every tensor uses that order)."""
    first = tensors[0]
    strides = first.stride()
    order = sorted(range(first.dim()), key=lambda d: -strides[d])
    return [t.permute(order).reshape(-1).float() for t in tensors]


def task_gradients(
    losses: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    *,
    retain_graph: bool = True,
    mode: JacobianMode = "batched",
) -> TaskGradients:
    """Gradient of each task loss w.r.t. each of ``inputs``.

    ``batched``: one backward with ``is_grads_batched`` (rows are views of its ``[T, ...]``
    results); ``sequential``: T backward passes keeping the graph. Inputs a loss does not reach
    get zero gradients.
    """
    if mode not in JACOBIAN_MODES:
        raise ValueError(f"unknown Jacobian mode {mode!r}; valid: {', '.join(JACOBIAN_MODES)}")
    inputs = list(inputs)
    n = losses.shape[0]
    if mode == "batched":
        eye = torch.eye(n, device=losses.device, dtype=losses.dtype)
        grads = torch.autograd.grad(
            losses,
            inputs,
            grad_outputs=eye,
            retain_graph=retain_graph,
            is_grads_batched=True,
            allow_unused=True,
        )
        blocks = [
            g if g is not None else torch.zeros(n, *x.shape, device=x.device, dtype=x.dtype)
            for g, x in zip(grads, inputs, strict=True)
        ]
        rows = tuple(tuple(b[t] for b in blocks) for t in range(n))
        return TaskGradients(rows, blocks[0] if len(blocks) == 1 else None)
    seq_rows = []
    for t in range(n):
        row = torch.autograd.grad(
            losses[t], inputs, retain_graph=retain_graph or t < n - 1, allow_unused=True
        )
        seq_rows.append(
            tuple(
                g if g is not None else torch.zeros_like(x)
                for g, x in zip(row, inputs, strict=True)
            )
        )
    return TaskGradients(tuple(seq_rows))


def task_jacobian(
    losses: torch.Tensor,
    inputs: Sequence[torch.Tensor],
    *,
    retain_graph: bool = True,
    mode: JacobianMode = "batched",
) -> torch.Tensor:
    """[T, m] float32: gradient of each task loss w.r.t. ``inputs``, flattened and concatenated."""
    return task_gradients(losses, inputs, retain_graph=retain_graph, mode=mode).matrix()


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features, losses)`` for :func:`backward`: one forward pass and ``[T]`` batch losses,
    or, for a strategy with ``samples_per_step = k``, ``[k, T]`` losses of k disjoint,
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
    losses = torch.stack(
        [task_losses(o.outputs, part, tasks) for o, part in zip(outs, labels, strict=True)]
    )
    return torch.cat([o.features for o in outs]), losses


def mean_losses(losses: torch.Tensor) -> torch.Tensor:
    """``[T]``: the batch losses for logging (the mean over samples of ``[k, T]`` losses)."""
    return losses if losses.dim() == 1 else losses.mean(dim=0)


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
    losses: torch.Tensor,
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
    if tuple(losses.shape) != (k, n):
        raise ValueError(
            f"strategy {strategy.name!r} takes [{k}, {n}] per-sample losses (see forward_losses), "
            f"got shape {tuple(losses.shape)}"
        )
    per_task = task_gradients(losses.reshape(-1), shared_params, mode=mode)
    result = strategy.sample_gramian_weights(per_task.gramian(), losses.detach())
    shared_grads = per_task.combine(result.shared.reshape(-1))
    del per_task
    total = _heads_backward(losses.mean(dim=0), result.weights, head_params, retain_graph=False)
    for p, g in zip(shared_params, shared_grads, strict=True):
        g = g.to(p.dtype)
        p.grad = g if p.grad is None else p.grad + g
    return StepResult(result.weights.detach().to(losses.device), total)


def backward(
    strategy: Strategy,
    losses: torch.Tensor,
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
