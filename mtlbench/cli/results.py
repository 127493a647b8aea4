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
    readme: Path | None = typer.Option(
        None,
        "--readme",
        help="Also paste summary.md (the top of the leaderboard, the verdicts and caveats) "
        "between this README's markers for the experiment.",
    ),
) -> None:
    """Rebuild the leaderboard, figures and report.html of an experiment from what MLflow
    stored (every study of it), and log them to a new run of the experiment named 'report'."""

    def go() -> Any:
        from mtlbench.config import TrackingConfig
        from mtlbench.infra.progress import RichReporter
        from mtlbench.report import readme as readme_block
        from mtlbench.report.files import build_report, log_report_run

        tr = TrackingConfig(experiment=experiment, tracking_uri=tracking_uri)
        out = Path(output) if output else Path("results") / experiment
        if readme is not None:
            # Checked first: a missing README or markers must not cost a whole report run.
            current = readme.read_text(encoding="utf-8")
            readme_block.paste(current, experiment, "")
        outcome = build_report(tr.resolved_uri, experiment, None, out)
        if readme is not None:
            body = readme_block.relink(outcome.readme, readme_block.link_folder(readme, out))
            readme.write_text(readme_block.paste(current, experiment, body), encoding="utf-8")
        run_id = log_report_run(tr.resolved_uri, experiment, outcome)
        return RichReporter(), outcome, run_id

    reporter, outcome, run_id = _guard(go)
    _print_summary(reporter, outcome.summary)
    reporter.info(f"wrote {', '.join(str(f) for f in outcome.files)}")
    if readme is not None:
        reporter.info(f"pasted summary.md into {readme}")
    reporter.info(
        f"{outcome.n_trials} trials of {len(outcome.parent_run_ids)} parent run(s); files logged "
        f"as artifacts of run {run_id} ('report') in experiment {experiment!r}"
    )


@app.command()
def ui(
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    experiment: str = typer.Option(
        "mtlbench", "--experiment", help="Experiment whose runs table to open."
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Interface to bind (default: local only)."
    ),
    port: int = typer.Option(5000, "--port"),
    open_browser: bool = typer.Option(
        True,
        "--open/--no-browser",
        help="Open the runs table in a web browser once the server answers.",
    ),
) -> None:
    """Serve the MLflow UI for the tracking store (127.0.0.1 by default) and open the
    experiment's runs table (MLflow's model-training view)."""
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
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    url = _runs_table(uri, experiment, base)
    proc = subprocess.Popen(cmd)
    try:
        typer.echo(f"MLflow UI for {uri}: {url}  (Ctrl-C to stop)", err=True)
        if open_browser and _wait_until_up(base, proc):
            import webbrowser

            webbrowser.open(url)
        raise typer.Exit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise typer.Exit(0) from None


def _runs_table(uri: str, experiment: str, base: str) -> str:
    """The runs-table address of ``experiment`` (tagged as a training experiment on the way:
    stores written by older versions lack the tag), or the experiments list if it is absent."""
    from mtlbench.tracking import (
        WORKFLOW_QUERY,
        make_client,
        mark_training_experiment,
        runs_table_url,
    )

    client = make_client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        typer.secho(
            f"no experiment named {experiment!r} in {uri} yet: opening the list of experiments",
            err=True,
            fg=typer.colors.YELLOW,
        )
        return f"{base}/#/experiments?{WORKFLOW_QUERY}"
    mark_training_experiment(client, found.experiment_id)
    return runs_table_url(base, found.experiment_id)


def _wait_until_up(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> bool:
    """True once the server answers /health; False if it exits or stays silent."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False
