"""Per-task gradients (rows of the Jacobian) and their Gramians, without building the ``[T, m]``
matrix unless a strategy needs it. Used by the gradient engine (:mod:`.gradients`) and the
double-sampling engine (:mod:`.samples`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

JacobianMode = Literal["batched", "sequential"]
JACOBIAN_MODES: tuple[JacobianMode, ...] = ("batched", "sequential")


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


def cross_gramian(a: TaskGradients, b: TaskGradients) -> torch.Tensor:
    """``J_a J_b^T`` as float64 on the CPU (rows of two sets of gradients of the same inputs),
    with the same float32 dot products summed in float64 as :meth:`TaskGradients.gramian`."""
    out = torch.zeros(len(a.rows), len(b.rows), dtype=torch.float64, device=a.rows[0][0].device)
    for p in range(len(a.rows[0])):
        flat = _flatten_alike([row[p] for row in a.rows] + [row[p] for row in b.rows])
        left, right = flat[: len(a.rows)], flat[len(a.rows) :]
        for i, u in enumerate(left):
            for j, v in enumerate(right):
                out[i, j] += torch.dot(u, v).double()
    return out.cpu()
