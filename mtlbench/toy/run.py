"""Run registered strategies on the toy, through the trainer's own gradient engine.

The toy is a "network" whose only shared parameter is the point ``x`` (a ``[1, 2]`` tensor, so
GradNorm finds a two-dimensional "last shared layer") and whose shared representation is ``x``
itself; there are no task-specific parameters. Each step is the trainer's step:
:func:`mtlbench.training.gradients.backward` computes the 2 x 2 Jacobian, hands it (or its
Gramian, or the
losses) to the strategy and writes the combined gradient into ``x.grad``; Adam then moves ``x``
with step size 1e-3, as in all three papers. Strategies that need the losses after the step get
them; ``on_epoch_end`` receives the mean unweighted losses of every ``epoch_steps`` steps (the
toy has no epochs; DWA's two warm-up "epochs" are then 2 x ``epoch_steps`` steps). Learned
weighting parameters get their own Adam group with step size ``strategy_lr`` (0.025, the
``method-params-lr`` default of the Nash-MTL / FAMO toy scripts).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtlbench.infra.progress import NullReporter, Reporter
from mtlbench.mtl.tasks import Task
from mtlbench.toy.problem import Start, get_setting
from mtlbench.toy.results import ToyConfig, ToyResult, Trajectory

# The two toy objectives as tasks: strategies only read their number and names.
TOY_TASKS: tuple[Task, ...] = (
    Task("f1", 0, "regression", 1, "f1", higher_is_better=False),
    Task("f2", 1, "regression", 1, "f2", higher_is_better=False),
)
ALL_GRADIENT = "all-gradient"
ALL = "all"


def select_strategies(specs: Sequence[str]) -> tuple[str, ...]:
    """Expand ``all-gradient`` (every registered strategy that combines gradients, i.e. needs
    more than the losses) and ``all`` (every registered strategy except single-task baselines,
    whose bare name expands to one run per task) and validate the other specs."""
    from mtlbench import weighting
    from mtlbench.weighting.base import GradientNeed

    out: list[str] = []
    for spec in specs:
        if spec in (ALL_GRADIENT, ALL):
            for name in weighting.available():
                cls = weighting.get(name)
                if any(h.expand for h in cls.hparams):
                    continue
                if spec == ALL_GRADIENT and cls.needs is GradientNeed.LOSSES:
                    continue
                out.append(name)
        else:
            weighting.resolve(spec)
            out.append(spec)
    return tuple(dict.fromkeys(out))


def run_trajectory(spec: str, start: Start, cfg: ToyConfig, scale: float) -> Trajectory:
    """One strategy from one starting point for ``cfg.steps`` Adam steps. (One function over 80
    lines on purpose: its loop is the trainer's step, line for line, and reads best in one piece.)
    """
    import torch
    from torch import nn

    from mtlbench import weighting
    from mtlbench.toy.model import PointModel
    from mtlbench.toy.problem import strategy_losses
    from mtlbench.training import gradients
    from mtlbench.training.samples import SampleLosses
    from mtlbench.weighting.base import StepContext

    strategy = weighting.create(spec, TOY_TASKS, seed=cfg.seed, overrides=cfg.overrides)
    model = PointModel(start)
    x = model.point
    # The engine hands head gradients to a list of head parameters; the toy has none that the
    # losses reach, and an empty parameter is "unused" (its gradient stays None).
    no_heads = [nn.Parameter(torch.zeros(0))]
    groups: list[dict[str, Any]] = [{"params": [x], "lr": cfg.lr}]
    own = [p for p in strategy.parameters() if p.requires_grad]
    if own:
        groups.append({"params": own, "lr": cfg.strategy_lr})
    optimizer = torch.optim.Adam(groups)

    def loss_fn(outputs: Sequence[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return strategy_losses(outputs[0][0], scale)

    # The toy has no data: one placeholder batch stands for training and validation alike.
    batch = (torch.zeros(1, 1), torch.zeros(1, 2))
    points = np.full((cfg.steps + 1, 2), np.nan)
    weights = np.full((cfg.steps, 2), np.nan)
    points[0] = (start.x1, start.x2)
    epoch_sum = torch.zeros(2, dtype=torch.float64)
    epoch = 0
    error = ""
    t0 = time.perf_counter()
    # Strategies warn once per failing step (Nash-MTL has no solution while the two gradients
    # are opposite, for thousands of steps here): their counters are reported once instead.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            for i in range(cfg.steps):
                optimizer.zero_grad(set_to_none=True)
                if strategy.needs_step_context:
                    strategy.prepare_step(StepContext(model, loss_fn, batch, batch, cfg.lr))
                out = model(batch[0])
                batch_losses = loss_fn(out.outputs, batch[1])
                # k independent samples of a deterministic loss are k copies of it.
                k = strategy.samples_per_step
                given = SampleLosses((batch_losses,) * k) if k > 1 else batch_losses
                step = gradients.backward(strategy, given, out.features, [x], no_heads)
                optimizer.step()
                losses = gradients.mean_losses(given)
                if strategy.needs_losses_after_step:
                    with torch.no_grad():
                        after = loss_fn(model(batch[0]).outputs, batch[1])
                    strategy.after_step(losses.detach(), after)
                epoch_sum += losses.detach().double()
                if (i + 1) % cfg.epoch_steps == 0:
                    strategy.on_epoch_end(epoch, (epoch_sum / cfg.epoch_steps).float())
                    epoch_sum.zero_()
                    epoch += 1
                row = x.detach()[0].double().numpy()
                points[i + 1] = row
                weights[i] = step.weights.double().cpu().numpy()
                if not np.all(np.isfinite(row)):
                    error = f"x left the finite numbers at step {i + 1}"
                    break
        except (ValueError, RuntimeError, ArithmeticError) as exc:
            error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t0
    if error:  # keep the path up to the failure; nan rows after it would hide nothing
        last = int(np.max(np.nonzero(np.all(np.isfinite(points), axis=1))[0]))
        points, weights = points[: last + 1], weights[:last]
    return Trajectory(spec, start, points, weights, seconds, error, dict(strategy.diagnostics()))


def _run_one(args: tuple[str, Start, ToyConfig, float]) -> Trajectory:
    import torch

    torch.set_num_threads(1)  # 2 x 2 problems: threads only add overhead
    return run_trajectory(*args)


def run_toy(cfg: ToyConfig, reporter: Reporter | None = None) -> ToyResult:
    """Every strategy of ``cfg`` from every starting point of its setting; with
    ``cfg.workers > 1`` the trajectories run in that many processes (results are identical)."""
    setting = get_setting(cfg.setting)
    specs = select_strategies(cfg.strategies)
    result = ToyResult(cfg, setting)
    reporter = reporter or NullReporter()
    jobs = [(spec, start, cfg, setting.scale) for spec in specs for start in setting.starts]
    done: dict[tuple[str, Start], Trajectory] = {}
    outcomes: Iterator[Trajectory]
    with reporter.progress("toy", total=len(jobs)) as bar:
        if cfg.workers == 1:
            outcomes = map(run_trajectory, *zip(*jobs, strict=True))
            pool = None
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn"))
            outcomes = pool.map(_run_one, jobs)
        try:
            for traj in outcomes:
                if traj.error:
                    reporter.warn(f"toy: {traj.strategy} from {traj.start} stopped: {traj.error}")
                counters = ", ".join(
                    f"{k} {v:g}" for k, v in traj.diagnostics.items() if v and k != "steps"
                )
                if counters:
                    reporter.warn(f"toy: {traj.strategy} from {traj.start}: {counters}")
                done[(traj.strategy, traj.start)] = traj
                bar.advance(1, strategy=traj.strategy, distance=traj.final_distance)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    for spec in specs:
        result.trajectories[spec] = tuple(done[(spec, s)] for s in setting.starts)
    return result


def toy_study(
    cfg: ToyConfig,
    out: Path,
    *,
    tracking_uri: str | None = None,
    experiment: str = "mtlbench-toy",
    reporter: Reporter | None = None,
) -> tuple[ToyResult, str | None]:
    """Run, draw ``out`` (PNG) and, when ``tracking_uri`` is given, log to MLflow; return the
    result and the MLflow run id (None without a tracking URI)."""
    from mtlbench.toy.plot import plot_toy

    if out.suffix.lower() != ".png":
        raise ValueError(f"the toy figure is a PNG: --out must end in .png, got {str(out)!r}")
    result = run_toy(cfg, reporter)
    plot_toy(result, out)
    run_id = None
    if tracking_uri is not None:
        from mtlbench.toy.track import log_toy

        run_id = log_toy(result, out, tracking_uri, experiment)
    return result, run_id
