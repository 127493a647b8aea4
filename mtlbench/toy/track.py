"""Log a toy run to MLflow: one run with the configuration as params, each strategy's distance to
the Pareto set along the way (``toy/<strategy>/distance_<start>``, step = Adam step; the last
value is the final distance) and the figure as an artifact."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mtlbench.toy.pareto import distance

if TYPE_CHECKING:
    from mtlbench.toy.results import ToyResult

N_LOGGED_STEPS = 50  # distance samples per trajectory, evenly spaced, the last step included


def metric_name(strategy: str, start_label: str) -> str:
    # MLflow names allow letters, digits, _ - . / space and colon; a spec such as
    # ``static:1,0.5`` carries a comma.
    return f"toy/{strategy.replace(',', '_')}/distance_{start_label}"


def params(result: ToyResult) -> dict[str, str]:
    cfg, setting = result.config, result.setting
    return {
        "setting": setting.name,
        "strategies": ",".join(result.trajectories),
        "steps": str(cfg.steps),
        "lr": f"{cfg.lr:g}",
        "optimizer": "adam",
        "strategy_lr": f"{cfg.strategy_lr:g}",
        "epoch_steps": str(cfg.epoch_steps),
        "seed": str(cfg.seed),
        "scale_f1": f"{setting.scale:g}",
        "starts": " ".join(str(s).replace(" ", "") for s in setting.starts),
    }


def log_toy(result: ToyResult, figure: Path, uri: str, experiment: str) -> str:
    """Log ``result`` and ``figure`` as a new run of ``experiment``; return the run id."""
    from mtlbench.tracking import KIND_TAG, Tracker

    tracker = Tracker(uri, experiment)
    run = tracker.start_run("toy", params=params(result), tags={KIND_TAG: "toy"})
    try:
        by_step: dict[int, dict[str, float]] = {}  # one MLflow batch per step, not per value
        for strategy, trajs in result.trajectories.items():
            for traj in trajs:
                n = len(traj.points) - 1
                steps = np.unique(np.linspace(0, n, min(N_LOGGED_STEPS, n + 1)).astype(int))
                dists = distance(traj.points[steps])
                name = metric_name(strategy, traj.start.label)
                for step, d in zip(steps.tolist(), dists.tolist(), strict=True):
                    if math.isfinite(d):
                        by_step.setdefault(step, {})[name] = d
                if traj.error:
                    run.set_tags({f"toy.error.{strategy}.{traj.start.label}": traj.error[:500]})
        for step in sorted(by_step):
            run.log_metrics(by_step[step], step=step)
        run.log_artifact(figure)
    except BaseException:
        run.end("FAILED")
        raise
    run.end()
    return run.run_id
