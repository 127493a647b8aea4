"""``mtlbench report`` and ``mtlbench ui``: look at what MLflow stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from mtlbench.cli.common import _guard, _print_summary, app


@app.command()
def report(
    experiment: str = typer.Argument("mtlbench", help="MLflow experiment to report on."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    output: str | None = typer.Option(None, "--output", help="(default: results/<experiment>)"),
) -> None:
    """Rebuild the leaderboard, figures and report.html of an experiment from what MLflow
    stored (every study of it), and log them to a new run of the experiment named 'report'."""

    def go() -> Any:
        from mtlbench.config import TrackingConfig
        from mtlbench.infra.progress import RichReporter
        from mtlbench.report.files import build_report, log_report_run

        tr = TrackingConfig(experiment=experiment, tracking_uri=tracking_uri)
        out = Path(output) if output else Path("results") / experiment
        outcome = build_report(tr.resolved_uri, experiment, None, out)
        run_id = log_report_run(tr.resolved_uri, experiment, outcome)
        return RichReporter(), outcome, run_id

    reporter, outcome, run_id = _guard(go)
    _print_summary(reporter, outcome.summary)
    reporter.info(f"wrote {', '.join(str(f) for f in outcome.files)}")
    reporter.info(
        f"{outcome.n_trials} trials of {len(outcome.parent_run_ids)} parent run(s); files logged "
        f"as artifacts of run {run_id} ('report') in experiment {experiment!r}"
    )


@app.command()
def ui(
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind (default: local only)."
    ),
    port: int = typer.Option(5000, "--port"),
) -> None:
    """Open the MLflow UI for the tracking store (binds 127.0.0.1 by default)."""
    from mtlbench.config import TrackingConfig
    from mtlbench.tracking import tracking_uri_for_ui

    uri = tracking_uri_for_ui(TrackingConfig(tracking_uri=tracking_uri).resolved_uri)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(
            f"warning: binding {host}: anyone who can reach this machine can read and delete runs",
            err=True,
            fg=typer.colors.YELLOW,
        )
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
    ]
    typer.echo(f"MLflow UI for {uri} on http://{host}:{port} (Ctrl-C to stop)", err=True)
    try:
        raise typer.Exit(subprocess.call(cmd))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
