"""What a toy run is asked for and what it returns: the run's configuration, one trajectory per
(strategy, start), and the whole result. Its own module so that the runner, the figure and the
MLflow logging all read these types without importing one another."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mtlbench.toy.pareto import distance
from mtlbench.toy.problem import LEARNING_RATE, Setting, Start, get_setting


@dataclass(frozen=True)
class ToyConfig:
    strategies: tuple[str, ...]
    setting: str = "cagrad"
    steps: int = 20_000
    lr: float = LEARNING_RATE
    strategy_lr: float = 0.025
    epoch_steps: int = 100
    seed: int = 0
    overrides: tuple[str, ...] = ()  # ``<strategy>.<param>=<value>``
    workers: int = 1  # processes running trajectories at once (each is independent)

    def __post_init__(self) -> None:
        get_setting(self.setting)
        if not self.strategies:
            raise ValueError("no strategies to run on the toy")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.epoch_steps < 1:
            raise ValueError(f"epoch_steps must be >= 1, got {self.epoch_steps}")
        for name, value in (("lr", self.lr), ("strategy_lr", self.strategy_lr)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive finite number, got {value}")


@dataclass(frozen=True)
class Trajectory:
    strategy: str
    start: Start
    points: NDArray[np.float64]  # [steps + 1, 2]: the start, then x after every step
    weights: NDArray[np.float64]  # [steps, 2]: the weights the strategy reported each step
    seconds: float
    error: str = ""  # the exception that stopped the run ("" when it ran to the end)
    # The strategy's own counters at the end (e.g. Nash-MTL's ``solver_failures``).
    diagnostics: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> NDArray[np.float64]:
        return self.points[-1]

    @property
    def final_distance(self) -> float:
        """Distance of the last point to the Pareto set (nan when it is not finite)."""
        if not np.all(np.isfinite(self.final)):
            return math.nan
        return float(distance(self.final))


@dataclass(frozen=True)
class ToyResult:
    config: ToyConfig
    setting: Setting
    trajectories: dict[str, tuple[Trajectory, ...]] = field(default_factory=dict)

    def final_distances(self) -> dict[str, tuple[float, ...]]:
        return {s: tuple(t.final_distance for t in ts) for s, ts in self.trajectories.items()}
