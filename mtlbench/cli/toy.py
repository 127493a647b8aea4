"""``mtlbench toy``: gradient methods on the classic two-objective toy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mtlbench.cli.common import _guard, _split_strategies, app
from mtlbench.infra import interrupts


@app.command()
def toy(
    strategies: str = typer.Option(
        "all-gradient",
        "--strategies",
        "-s",
        help="Comma-separated strategy names, 'all-gradient' (every strategy that combines "
        "gradients) or 'all' (also the loss-weighting ones).",
    ),
    steps: int = typer.Option(
        30_000, "--steps", help="Adam steps per trajectory (the papers: 35,000-100,000)."
    ),
    setting: str = typer.Option(
        "cagrad",
        "--setting",
        help="cagrad (3 starting points, f1 unscaled) | nash-mtl (5 points, f1 x 0.1; FAMO's too).",
    ),
    out: Path = typer.Option(Path("toy.png"), "--out", help="The figure (PNG)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the strategies' own random numbers."),
    workers: int = typer.Option(1, "--workers", help="Processes running trajectories at once."),
    strategy_param: list[str] | None = typer.Option(
        None, "--strategy-param", help="e.g. cagrad.c=0.5 (repeatable)."
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="Log params, distances and the figure to this MLflow store."
    ),
    experiment: str = typer.Option("mtlbench-toy", "--experiment", help="MLflow experiment."),
) -> None:
    """Run gradient-combining strategies on the two-objective toy of CAGrad (Liu et al. 2021,
    Fig. 1) from the papers' starting points and draw their trajectories, one panel each."""

    def go() -> Any:
        from mtlbench.infra.progress import RichReporter
        from mtlbench.toy.run import ToyConfig, toy_study

        interrupts.install()
        cfg = ToyConfig(
            strategies=tuple(_split_strategies(strategies)),
            setting=setting,
            steps=steps,
            seed=seed,
            overrides=tuple(strategy_param or ()),
            workers=workers,
        )
        reporter = RichReporter()
        return reporter, *toy_study(
            cfg, out, tracking_uri=tracking_uri, experiment=experiment, reporter=reporter
        )

    reporter, result, run_id = _guard(go)
    from mtlbench.toy.plot import caption

    reporter.info(caption(result))
    reporter.info(f"wrote {out}" + (f"; MLflow run {run_id} in {experiment!r}" if run_id else ""))
