"""The double-sampling engine: gradients of ``k`` independent samples' task losses
(``samples_per_step = k``), computed only as far as the strategy declares it reads them.

A strategy reads some blocks of the ``[kT, kT]`` per-sample Gramian (``gramian_blocks``) and
moves the network along some samples' gradients (``update_samples``). MoDo and SDMGrad read only
``J_1 J_2^T`` and move along ``J_3^T c``: the engine holds sample 1's T rows, streams sample 2's
rows one at a time (each dotted with sample 1's and dropped), and forms sample 3's part with one
backward pass of ``sum_t c_t L_t(z_3)``. That is T + 1 live gradient rows and 2T + 1 backward
passes of a third of the batch, instead of 3T rows and 3T passes for the whole Gramian
(measured in ``docs/strategies.md``). Blocks nobody declared are NaN, so a strategy reading one
fails loudly instead of reading zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mtlbench.training.jacobian import JacobianMode, TaskGradients, cross_gramian, task_gradients
from mtlbench.weighting.base import SampleWeights, Strategy


@dataclass(frozen=True)
class SampleLosses:
    """``[k, T]`` task losses of k independent samples, one ``[T]`` tensor per sample, each with
    its own graph. Not stacked into one tensor: a backward pass from one entry of a stacked
    tensor traverses every sample's graph (with zero gradients for the others), which made each
    per-sample gradient cost k of them (measured: 70 ms instead of 23 ms per backward pass of a
    third of a ResNet18 batch on 2 CPU cores)."""

    parts: tuple[torch.Tensor, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.parts), *self.parts[0].shape)

    def detach(self) -> torch.Tensor:
        """The ``[k, T]`` values, without graph."""
        return torch.stack([p.detach() for p in self.parts])

    def mean(self) -> torch.Tensor:
        """``[T]``: the mean over samples, with graph (the heads' backward)."""
        return torch.stack(list(self.parts)).mean(dim=0)


def declared_blocks(strategy: Strategy, k: int) -> tuple[tuple[int, int], ...]:
    """The ``(a, b)`` sample pairs (``a <= b``) whose Gramian block the strategy reads."""
    if strategy.gramian_blocks is None:
        return tuple((a, b) for a in range(k) for b in range(a, k))
    for a, b in strategy.gramian_blocks:
        if not 0 <= a <= b < k:
            raise ValueError(
                f"strategy {strategy.name!r}: Gramian block {(a, b)} is not a pair a <= b of "
                f"samples 0..{k - 1}"
            )
    return tuple(strategy.gramian_blocks)


def declared_updates(strategy: Strategy, k: int) -> tuple[int, ...]:
    """The samples whose gradients the strategy's update may use."""
    if strategy.update_samples is None:
        return tuple(range(k))
    if not all(0 <= s < k for s in strategy.update_samples):
        raise ValueError(
            f"strategy {strategy.name!r}: update samples {strategy.update_samples} must lie in "
            f"0..{k - 1}"
        )
    return tuple(strategy.update_samples)


def streamed_sample(blocks: Sequence[tuple[int, int]], update: Sequence[int]) -> int | None:
    """A sample whose rows need not be held: only in off-diagonal blocks, never in the update
    (the last such sample; its partners are held)."""
    candidates = [
        s
        for s in sorted({s for blk in blocks for s in blk})
        if s not in update and (s, s) not in blocks
    ]
    return candidates[-1] if candidates else None


def _put(gram: torch.Tensor, a: int, b: int, block: torch.Tensor, n: int) -> None:
    gram[a * n : (a + 1) * n, b * n : (b + 1) * n] = block
    gram[b * n : (b + 1) * n, a * n : (a + 1) * n] = block.T


def sample_gramian(
    losses: SampleLosses,
    params: Sequence[nn.Parameter],
    blocks: Sequence[tuple[int, int]],
    update: Sequence[int],
    mode: JacobianMode,
) -> tuple[torch.Tensor, dict[int, TaskGradients]]:
    """The ``[kT, kT]`` Gramian with the declared blocks filled (NaN elsewhere) and the rows
    still held (the samples in ``update`` among them: the caller combines them)."""
    k, n = losses.shape
    streamed = streamed_sample(blocks, update)
    needed = sorted({s for blk in blocks for s in blk} - {streamed})
    held = {s: task_gradients(losses.parts[s], params, mode=mode) for s in needed}
    gram = torch.full((k * n, k * n), float("nan"), dtype=torch.float64)
    for a, b in blocks:
        if a in held and b in held:
            _put(gram, a, b, held[a].gramian() if a == b else cross_gramian(held[a], held[b]), n)
    if streamed is not None:
        for t in range(n):
            row = task_gradients(losses.parts[streamed][t : t + 1], params, mode="sequential")
            for a, b in blocks:
                other = a if b == streamed else b if a == streamed else None
                if other is not None:
                    column = cross_gramian(held[other], row)[:, 0]
                    gram[other * n : (other + 1) * n, streamed * n + t] = column
                    gram[streamed * n + t, other * n : (other + 1) * n] = column
            del row
    return gram, held


def sample_shared_gradients(
    strategy: Strategy,
    losses: SampleLosses,
    params: Sequence[nn.Parameter],
    mode: JacobianMode,
) -> tuple[list[torch.Tensor], SampleWeights]:
    """The shared parameters' update ``sum_{s,t} W_st g_st`` for ``[k, T]`` losses (graphs
    kept: the heads' backward follows) and the strategy's :class:`SampleWeights`."""
    k, _ = losses.shape
    blocks, update = declared_blocks(strategy, k), declared_updates(strategy, k)
    gram, held = sample_gramian(losses, params, blocks, update, mode)
    result = strategy.sample_gramian_weights(gram, losses.detach())
    unused = [s for s in range(k) if s not in update and bool(result.shared[s].abs().max() > 0)]
    if unused:
        raise ValueError(
            f"strategy {strategy.name!r} weighted samples {unused} outside its declared "
            f"update_samples {update}"
        )
    total: list[torch.Tensor] | None = None
    for s in update:
        if s in held:
            part = held.pop(s).combine(result.shared[s])
        else:
            part_losses = losses.parts[s]
            coef = result.shared[s].to(device=part_losses.device, dtype=part_losses.dtype)
            grads = torch.autograd.grad(
                (coef * part_losses).sum(), list(params), retain_graph=True, allow_unused=True
            )
            part = [
                g if g is not None else torch.zeros_like(p)
                for g, p in zip(grads, params, strict=True)
            ]
        total = part if total is None else [a + b for a, b in zip(total, part, strict=True)]
    held.clear()
    if total is None:
        return [torch.zeros_like(p) for p in params], result
    return total, result
