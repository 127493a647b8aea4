"""A small fake study written straight into MLflow (no training), for report tests.

The metric values are known in advance, so tests can recompute every leaderboard number on
their own; the runs carry the same params, tags and metric names a real study logs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from mtlbench.tracking import KIND_TAG, STATUS_TAG, Tracker

EXPERIMENT = "fake"
LRS = (1e-3, 1e-2)
SEEDS = (0, 1, 2)
GROUP = {
    "data_sha256": "d" * 64,
    "split_sha256": "s" * 64,
    "image_size": "32",
    "backbone": "tiny",
    "epochs": "3",
}
BUDGET = {
    "data": "/somewhere/UTKFace.tar.gz",
    "max_samples": "5000",
    "n_train": "3500",
    "n_val": "750",
    "n_test": "750",
    "weights": "none",
    "batch_size": "64",
    "optimizer": "adamw",
}
# Test metrics at the good lr (1e-3): age MAE, gender acc, race acc.
QUALITY = {
    "sum": (10.0, 0.80, 0.60),
    "dwa": (9.0, 0.82, 0.62),
    "pcgrad": (11.0, 0.78, 0.58),
    "static:2,1,0": (9.5, 0.79, 0.50),
    "static:0,1,2": (20.0, 0.81, 0.63),
    "stl:age": (9.5, 0.5, 0.2),
    "stl:gender": (15.0, 0.85, 0.2),
    "stl:race": (15.0, 0.5, 0.65),
}
# Per (strategy, seed) noise, so paired differences vary between seeds.
NOISE = {0: (-0.4, -0.01, 0.02), 1: (0.1, 0.00, -0.01), 2: (0.5, 0.015, 0.0)}
DWA_EXTRA = {0: (0.3, 0.0, 0.0), 1: (-0.2, 0.01, 0.0), 2: (0.0, -0.005, 0.01)}


def tasks_of(strategy: str) -> str:
    if strategy.startswith("stl:"):
        return strategy.split(":")[1]
    if strategy == "static:2,1,0":
        return "age,gender"
    if strategy == "static:0,1,2":
        return "gender,race"
    return "age,gender,race"


def metrics_of(strategy: str, lr: float, seed: int) -> tuple[float, float, float]:
    age, gender, race = QUALITY[strategy]
    na, ng, nr = NOISE[seed]
    if strategy == "dwa":
        ea, eg, er = DWA_EXTRA[seed]
        na, ng, nr = na + ea, ng + eg, nr + er
    worse = 0.0 if lr == 1e-3 else 1.0  # lr 1e-2 is worse everywhere (val and test)
    return age + na + 5 * worse, gender + ng - 0.1 * worse, race + nr - 0.1 * worse


@dataclass(frozen=True)
class FakeStudy:
    uri: str
    parents: tuple[str, ...]
    diverged_run: str
    repeated_run: str  # an older duplicate of sum lr=1e-3 seed=0, to be left out


def _trial(
    tracker: Tracker,
    parent: object,
    strategy: str,
    lr: float,
    seed: int,
    *,
    status: str = "finished",
    group: dict[str, str] | None = None,
    offset: float = 0.0,
) -> str:
    run = tracker.start_run(
        f"{strategy} lr={lr:g} seed={seed}",
        params={
            "strategy": strategy,
            "lr": f"{lr:g}",
            "seed": str(seed),
            "tasks": tasks_of(strategy),
            **(group or GROUP),
            **BUDGET,
        },
        tags={KIND_TAG: "trial", STATUS_TAG: status},
        parent=parent,  # type: ignore[arg-type]
    )
    age, gender, race = metrics_of(strategy, lr, seed)
    age += offset
    score = 0.5 + 0.01 * seed + (0.2 if lr == 1e-2 else 0.0) + 0.01 * (age - 10)
    for epoch in range(3):
        frac = (epoch + 1) / 3
        metrics = {
            "val/age_mae": 25 - (25 - age) * frac,
            "val/gender_acc": 0.5 + (gender - 0.5) * frac,
            "val/race_acc": 0.2 + (race - 0.2) * frac,
            "weight/age": 1.0 if strategy != "dwa" else 1.0 + 0.1 * epoch,
            "weight/gender": 1.0,
            "weight/race": 1.0 if strategy != "dwa" else 1.0 - 0.1 * epoch,
        }
        run.log_metrics(metrics, step=epoch)
    if status == "finished":
        run.log_metrics(
            {
                "best_val/score": score,
                "best_val/age_mae": age,
                "best_val/gender_acc": gender,
                "best_val/race_acc": race,
                "best_epoch": 2,
                "test/age_mae": age,
                "test/gender_acc": gender,
                "test/race_acc": race,
                "test/score": score,
            },
            step=2,
        )
    run.end("FINISHED")
    return run.run_id


def make_study(folder: Path) -> FakeStudy:
    """Two parent runs (loss-based + baselines, then gradient + sweep), one diverged trial,
    one repeated trial, and a second group (64 px) that must stay separate."""
    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracker = Tracker(uri, EXPERIMENT)
    first = tracker.start_run("grid 1", tags={KIND_TAG: "study"})
    repeated = _trial(tracker, first, "sum", 1e-3, 0, offset=100.0)  # older, left out
    for strategy in ("sum", "dwa", "stl:age", "stl:gender", "stl:race"):
        for lr in LRS:
            for seed in SEEDS:
                _trial(tracker, first, strategy, lr, seed)
    for seed in (0, 1):  # another image size: a separate, incomparable group
        _trial(tracker, first, "sum", 1e-3, seed, group={**GROUP, "image_size": "64"})
    first.end("FINISHED")
    second = tracker.start_run("grid 2", tags={KIND_TAG: "study"})
    diverged = ""
    for strategy in ("pcgrad", "static:2,1,0", "static:0,1,2"):
        lrs = LRS if strategy == "pcgrad" else (1e-3,)
        for lr in lrs:
            for seed in SEEDS:
                status = "diverged" if (strategy, lr, seed) == ("pcgrad", 1e-2, 2) else "finished"
                rid = _trial(tracker, second, strategy, lr, seed, status=status)
                diverged = rid if status == "diverged" else diverged
    second.end("FINISHED")
    return FakeStudy(uri, (first.run_id, second.run_id), diverged, repeated)


@functools.cache
def built_report(base: Path) -> tuple[FakeStudy, Path]:
    """The fake study and ``mtlbench report`` run on it once per test session (cached)."""
    from typer.testing import CliRunner

    from mtlbench.cli.app import app

    study = make_study(base / "study")
    out = base / "report"
    result = CliRunner().invoke(
        app, ["report", EXPERIMENT, "--tracking-uri", study.uri, "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    return study, out
