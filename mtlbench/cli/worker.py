"""``mtlbench worker``: join an Optuna study from any machine."""

from __future__ import annotations

import typer

from mtlbench.cli.common import _guard, app
from mtlbench.infra import interrupts


@app.command()
def worker(
    study_name: str = typer.Option(..., "--study-name", help="The study to join."),
    storage: str = typer.Option(
        ...,
        "--storage",
        envvar="MTLBENCH_OPTUNA_STORAGE",
        help="Its Optuna storage URL, e.g. postgresql://user:password@host:5432/optuna.",
    ),
    device: str | None = typer.Option(
        None, "--device", help="cpu | cuda | cuda:<i> (default: the study's device setting)."
    ),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads."),
    worker_index: int | None = typer.Option(
        None, "--worker-index", help="Seeds this worker's sampler (default: random)."
    ),
    tracking_uri: str | None = typer.Option(
        None, "--tracking-uri", help="MLflow tracking URI (default: the study's)."
    ),
    data: str | None = typer.Option(
        None, "--data", help="The study's images at another path on this machine."
    ),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Decoded-image cache."),
    quiet: bool = typer.Option(False, "--quiet", help="Only warnings and errors."),
) -> None:
    """Join an existing Optuna study and run its trials until it holds --n-trials finished."""

    def go() -> int:
        from mtlbench.infra.progress import RichReporter
        from mtlbench.runs.optuna.workers import WorkerOptions, join_study

        interrupts.install()
        opts = WorkerOptions(device, threads, worker_index, tracking_uri, data, cache_dir)
        return len(join_study(study_name, storage, opts, RichReporter(quiet=quiet)))

    n = _guard(go, interrupted="interrupted; the study keeps its finished trials")
    if not quiet:
        typer.echo(f"worker done: ran {n} trial(s)", err=True)
