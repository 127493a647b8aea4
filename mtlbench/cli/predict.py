"""``mtlbench predict``: a logged HydraNet on image files."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

from mtlbench.cli.common import TRACKING_URI_HELP, _fail, app

if TYPE_CHECKING:
    from mtlbench.predict.run import Predictions


@app.command()
def predict(
    inputs: list[str] = typer.Argument(
        ..., metavar="IMAGE_OR_FOLDER", help="Image files, or folders searched for images."
    ),
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="A trial's run id, runs:/<run id>/model or models:/<name>/<version>.",
    ),
    tracking_uri: str | None = typer.Option(
        None,
        "--tracking-uri",
        help=TRACKING_URI_HELP,
    ),
    fmt: str = typer.Option("table", "--format", help="table | csv | json"),
) -> None:
    """Predict every task (age, gender, race) for each image with a model a study logged."""
    from mtlbench.config import TrackingConfig
    from mtlbench.predict.formatting import FORMATS

    if fmt not in FORMATS:
        raise _fail(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    # MLflow draws a download bar per artifact; it would land in the user's output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mtlbench.predict.run import PredictError
    from mtlbench.predict.run import predict as run_predict

    uri = TrackingConfig(tracking_uri=tracking_uri).resolved_uri
    try:
        preds = run_predict(inputs, model, uri)
    except PredictError as err:
        raise _fail(str(err)) from None
    for path, reason in preds.unreadable:
        typer.echo(f"skipped {path}: {reason}", err=True)
    _show(preds, fmt)
    if not preds.rows:
        raise _fail("no readable image among the inputs", code=1)


def _show(preds: Predictions, fmt: str) -> None:
    from mtlbench.predict.formatting import table_rows, to_csv, to_json

    if fmt == "json":
        typer.echo(to_json(preds))
        return
    if fmt == "csv":
        typer.echo(to_csv(preds), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    header, cells = table_rows(preds)
    table = Table(*header)
    for row in cells:
        table.add_row(*row)
    Console().print(table)
