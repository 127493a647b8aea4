"""``mtlbench bench --strategies``: the cost of each weighting strategy relative to ``sum``.

One process, one model (ResNet18 by default), one fixed random batch (64 images of 32 px):
every strategy runs the same training step the trainer runs (forward, the gradient engine,
optimiser step, and FAMO's extra forward after the step when the strategy declares it). Two
Jacobian baselines run beside them, ``jacobian/<need>:<mode>`` for the representation and the
shared parameters in both modes (one batched backward with ``is_grads_batched``, or T sequential
backward passes with ``retain_graph``): a step that sums the Jacobian rows, i.e. the engine's own
cost without any aggregator.

Time: strategies are timed in interleaved rounds (each round runs ``steps`` timed steps of every
variant, after ``warmup`` untimed ones in the first round), and the median step time is reported,
so a slow spell of a shared machine hits every variant alike.

Peak memory: the largest amount of tensor memory allocated during one step above what was
allocated when the step began (activations, the Jacobian, gradients, solver temporaries; the
model and optimiser state are excluded). On CUDA it is ``torch.cuda.max_memory_allocated``; on
the CPU it is read from the torch profiler's allocation events (``profile_memory=True``), which
record every allocation of torch's CPU allocator with the running total (``tracemalloc`` sees
none of them; RSS high-water marks cannot be reset per variant and include freed-but-cached
pages). That profiled step is separate from the timed ones.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mtlbench import weighting
from mtlbench.config import ModelConfig, TrainConfig
from mtlbench.mtl.model import HydraNet, build_model
from mtlbench.mtl.tasks import TASKS, Task, random_batch, task_losses
from mtlbench.training import gradients
from mtlbench.training.gradients import JacobianMode
from mtlbench.training.loop import make_optimizer
from mtlbench.weighting.base import GradientCombination, GradientNeed, Strategy


@dataclass(frozen=True)
class StrategyRow:
    name: str
    needs: str
    mode: str  # Jacobian mode the engine used ("-" for loss-only strategies)
    step_ms: float
    peak_mb: float
    time_ratio: float = float("nan")  # vs sum
    memory_ratio: float = float("nan")


class _JacobianSum(Strategy):
    """Baseline: the Jacobian's rows summed, no aggregator (not registered)."""

    name = "jacobian"
    paper = "baseline"

    def combine_gradients(
        self,
        jacobian: torch.Tensor,
        losses: torch.Tensor,
        *,
        features: torch.Tensor | None = None,
    ) -> GradientCombination:
        weights = torch.ones(jacobian.shape[0], device=jacobian.device)
        return GradientCombination(jacobian.sum(dim=0), weights)


class _RepresentationSum(_JacobianSum):
    needs = GradientNeed.REPRESENTATION


class _SharedSum(_JacobianSum):
    needs = GradientNeed.SHARED_PARAMETERS


@dataclass
class _Variant:
    label: str
    strategy: Strategy
    mode: JacobianMode | None
    model: HydraNet
    optimizer: torch.optim.Optimizer
    times: list[float]


def _losses(model: HydraNet, x: torch.Tensor, y: torch.Tensor) -> tuple[Any, torch.Tensor]:
    out = model(x)
    return out, task_losses(out.outputs, y, model.tasks)


def _train_step(v: _Variant, x: torch.Tensor, y: torch.Tensor) -> None:
    model, strategy = v.model, v.strategy
    # a validation batch of the same size: the training batch itself (the cost is what counts)
    lr = float(v.optimizer.param_groups[0]["lr"])
    gradients.prepare_step(strategy, model, (x, y), lambda: (x, y), lr, model.tasks)
    features, losses = gradients.forward_losses(strategy, model, x, y, model.tasks)
    gradients.backward(
        strategy,
        losses,
        features,
        model.shared_parameters(),
        model.head_parameters(),
        mode=v.mode,
    )
    v.optimizer.step()
    losses = gradients.mean_losses(losses)
    if strategy.needs_losses_after_step:
        with torch.no_grad():
            _, after = _losses(model, x, y)
        strategy.after_step(losses.detach(), after.detach())


def _bound_step(v: _Variant, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    return lambda: _train_step(v, x, y)


def _peak_cpu_bytes(fn: Callable[[], None]) -> float:
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    # Kineto otherwise prints profiler_start/stop and a "gpuGetDeviceCount failed" ERROR line to
    # stderr on every profile of a CPU-only machine: noise in the table, not a fault. Read when
    # the profiler starts, so setting it here (if the user has not) is enough.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            events.append((node.start_time_ns, int(node.extra_fields.alloc_size)))
        stack.extend(node.children)
    # Running sum of this step's allocations (frees are negative sizes), in time order: the
    # allocator's own running total is process-wide and not reset between profiles.
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return float(peak)


def _peak_bytes(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - base)
    try:
        return _peak_cpu_bytes(fn)
    except Exception:  # the profiler's event tree is not a stable API: report, don't crash
        return float("nan")


def _make_variant(
    label: str,
    strategy: Strategy,
    mode: JacobianMode | None,
    base: HydraNet,
    device: torch.device,
) -> _Variant:
    model = copy.deepcopy(base)
    strategy = strategy.to(device)
    optimizer = make_optimizer(TrainConfig(), 1e-3, model, strategy)
    return _Variant(label, strategy, mode, model, optimizer, [])


def bench_strategies(
    names: Sequence[str],
    *,
    backbone: str = "resnet18",
    batch_size: int = 64,
    image_size: int = 32,
    steps: int = 3,
    rounds: int = 3,
    warmup: int = 2,
    device: torch.device | None = None,
    baselines: bool = True,
    progress: Callable[[str], None] | None = None,
    tasks: Sequence[Task] = TASKS,
    channels: int = 3,
) -> list[StrategyRow]:
    """Step time and peak memory of each strategy spec in ``names`` (``sum`` is added first),
    on a model with a head per task of ``tasks`` and ``channels``-channel images."""
    device = device or torch.device("cpu")
    names = ["sum", *[n for n in names if n != "sum"]]
    torch.manual_seed(0)
    base = build_model(ModelConfig(backbone=backbone), tasks, channels).to(device)
    batch = random_batch(batch_size, image_size, tasks=tasks, channels=channels)
    x, y = (t.to(device) for t in batch)
    variants = [
        _make_variant(n, weighting.create(n, tasks, seed=0), None, base, device) for n in names
    ]
    if baselines:
        for short, cls in (("representation", _RepresentationSum), ("shared", _SharedSum)):
            for mode in gradients.JACOBIAN_MODES:
                label = f"jacobian/{short}:{mode}"
                variants.append(_make_variant(label, cls(tasks), mode, base, device))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for r in range(rounds):
        for v in variants:
            if progress is not None:
                progress(f"round {r + 1}/{rounds}: {v.label}")
            for i in range(steps + (warmup if r == 0 else 0)):
                v.optimizer.zero_grad(set_to_none=True)
                sync()
                start = time.perf_counter()
                _train_step(v, x, y)
                sync()
                if r > 0 or i >= warmup:
                    v.times.append(time.perf_counter() - start)
    rows = []
    for v in variants:
        v.optimizer.zero_grad(set_to_none=True)
        peak = _peak_bytes(_bound_step(v, x, y), device)
        need = v.strategy.needs
        used = v.mode or ("-" if need is GradientNeed.LOSSES else gradients.DEFAULT_MODE[need])
        rows.append(
            StrategyRow(v.label, need.value, used, 1e3 * statistics.median(v.times), peak / 2**20)
        )
    ref = rows[0]
    return [
        StrategyRow(
            r.name,
            r.needs,
            r.mode,
            r.step_ms,
            r.peak_mb,
            r.step_ms / ref.step_ms,
            r.peak_mb / ref.peak_mb if ref.peak_mb > 0 else float("nan"),
        )
        for r in rows
    ]


TARGETS = {
    GradientNeed.LOSSES.value: 1.05,
    GradientNeed.LAST_SHARED_LAYER.value: 1.2,
    GradientNeed.REPRESENTATION.value: 1.2,
    GradientNeed.SHARED_PARAMETERS.value: 2.6,
}


def strategies_table(rows: Sequence[StrategyRow], *, markdown: bool = False) -> str:
    """The rows as a fixed-width (or Markdown) table, with each need's CPU target."""
    header = ["strategy", "needs", "jacobian", "ms/step", "x sum", "target", "peak MB", "x sum"]
    body = []
    for r in rows:
        target = TARGETS.get(r.needs)
        body.append(
            [
                r.name,
                r.needs,
                r.mode,
                f"{r.step_ms:.0f}",
                f"{r.time_ratio:.2f}",
                "-" if target is None or r.name.startswith("jacobian/") else f"<= {target:g}",
                f"{r.peak_mb:.0f}",
                f"{r.memory_ratio:.2f}",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:{'<' if i < 3 else '>'}{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*header), *(fmt.format(*b) for b in body)])
