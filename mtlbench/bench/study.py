"""Study throughput: the same grid run one trial after another and with K worker processes,
measured in one invocation (trials per hour, wall time including worker start-up)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mtlbench.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    SearchConfig,
    TrackingConfig,
    TrainConfig,
)


@dataclass(frozen=True)
class StudyThroughput:
    n_trials: int
    workers: int
    sequential_s: float
    parallel_s: float

    def table(self) -> str:
        seq = 3600 * self.n_trials / self.sequential_s
        par = 3600 * self.n_trials / self.parallel_s
        return "\n".join(
            [
                "| mode | wall time (s) | trials/hour |",
                "|---|---|---|",
                f"| one trial after another | {self.sequential_s:.1f} | {seq:.0f} |",
                f"| {self.workers} worker processes | {self.parallel_s:.1f} | {par:.0f} |",
                "",
                f"speed-up: {self.sequential_s / self.parallel_s:.2f}x",
            ]
        )


def study_throughput(
    source: str | None,
    *,
    workers: int,
    cache_dir: Path,
    strategies: tuple[str, ...] = ("sum", "uncertainty"),
    seeds: tuple[int, ...] = (0, 1),
    epochs: int = 2,
    image_size: int = 32,
    max_samples: int | None = 1000,
    backbone: str = "resnet18",
    device: str = "auto",
    dataset: str = "utkface",
) -> StudyThroughput:
    from mtlbench.runs.launch import run_study

    walls = []
    with tempfile.TemporaryDirectory(prefix="mtlbench-study-bench-") as tmp:
        for k in (1, workers):
            cfg = RunConfig(
                data=DataConfig(
                    source=source,
                    image_size=image_size,
                    max_samples=max_samples,
                    cache_dir=str(cache_dir),
                    dataset=dataset,
                ),
                model=ModelConfig(backbone=backbone),
                train=TrainConfig(epochs=epochs, device=device),
                search=SearchConfig(strategies=strategies, seeds=seeds, workers=k),
                tracking=TrackingConfig(
                    experiment=f"throughput-{k}", tracking_uri=f"sqlite:///{tmp}/mlflow.db"
                ),
                output=f"{tmp}/out-{k}",
            )
            start = time.perf_counter()
            run_study(cfg)
            walls.append(time.perf_counter() - start)
    return StudyThroughput(len(strategies) * len(seeds), workers, walls[0], walls[1])
