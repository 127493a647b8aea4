"""What every command shares: the Typer apps, one-line errors, Ctrl-C handling, list options."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from mtlbench import __version__
from mtlbench.config import ConfigError

TRACKING_URI_HELP = "MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)."

app = typer.Typer(
    help="Benchmark multi-task loss-weighting strategies on a UTKFace HydraNet, tracked in MLflow.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _flags_without_a_type() -> None:
    """Typer 0.29's rich help prints ``<bool>`` after a flag as if it took a value
    (``--resume <bool>``); a flag takes none, so its help shows no type."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_without_a_type()
data_app = typer.Typer(help="Look at a dataset before training on it.", no_args_is_help=True)
app.add_typer(data_app, name="data")

T = TypeVar("T")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _guard(fn: Callable[[], T], interrupted: str = "interrupted") -> T:
    """Turn user errors (bad data, bad config, missing weights) into one line and exit code 2;
    Ctrl-C / SIGTERM into the ``interrupted`` message and exit code 130."""
    from mtlbench.infra.errors import UserError

    try:
        return fn()
    except (UserError, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        raise _fail(interrupted, code=130) from None


def _resume_command() -> str:
    args = [a for a in sys.argv[1:] if a != "--resume"]
    return " ".join(shlex.quote(a) for a in ["mtlbench", *args, "--resume"])


def _csv(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",")]
    if not all(items):
        raise _fail(f"empty item in comma-separated list {text!r}")
    return items


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mtlbench {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """mtlbench: which loss weighting is best once every method gets a fair lr search?"""


def _split_strategies(text: str) -> list[str]:
    """Split ``--strategies`` on commas, keeping ``static:1,0.5,2`` arguments together."""
    items: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise _fail(f"empty item in --strategies {text!r}")
        if items and ":" in items[-1] and _is_number(part):
            items[-1] += "," + part
        else:
            items.append(part)
    return items


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _print_summary(reporter: Any, summary: Any) -> None:
    from rich.table import Table

    from mtlbench.mtl.tasks import UTKFACE_TASKS, TaskSet
    from mtlbench.report.tables import TASK_SPEC

    spec = summary.attrs.get(TASK_SPEC)
    tasks = TaskSet.from_json(spec) if spec else UTKFACE_TASKS
    columns = []  # (header, test column, format), e.g. ("age MAE (y)", "test/age_mae", ".2f")
    for t in tasks:
        words = " ".join(w.upper() if w == "mae" else w for w in t.metric.split("_"))
        header = f"{words} ({t.unit[0]})" if t.unit else words
        columns.append((header, f"test/{t.metric}", ".2f" if t.kind == "regression" else ".3f"))
    table = Table(title="Per strategy, learning rate chosen on validation (test metrics)")
    for col in ("strategy", "best lr", "seeds", *(c[0] for c in columns), "diverged"):
        table.add_column(col, justify="left" if col == "strategy" else "right", no_wrap=True)

    def cell(row: Any, col: str, fmt: str) -> str:
        value = row.get(col)
        if value is None or value != value:
            return "–"
        std = row.get(f"{col}_std")
        text = format(value, fmt)
        return text if std is None or std != std else f"{text} ± {format(std, fmt)}"

    for _, row in summary.iterrows():
        lr = row.get("best_lr")
        table.add_row(
            str(row["strategy"]),
            "–" if lr is None or lr != lr else f"{lr:g}",
            str(int(row.get("n_seeds", 0) or 0)),
            *(cell(row, col, fmt) for _, col, fmt in columns),
            str(int(row.get("n_diverged", 0))),
        )
    reporter.console.print(table)


def _optuna_options(opts: dict[str, Any]) -> dict[str, Any]:
    """SearchConfig fields of the Optuna flags of ``run`` (None: keep the TOML/default)."""
    lr_range = _csv(opts.get("lr_range"))
    try:
        low_high = tuple(float(x) for x in lr_range) if lr_range else None
    except ValueError:
        raise ConfigError(
            f"--lr-range takes two numbers LOW,HIGH, got {opts['lr_range']!r}"
        ) from None
    devices = _csv(opts.get("devices"))
    return {
        "objective": opts.get("objective"),
        "pruner": "none" if opts.get("no_prune") else None,
        "lr_range": low_high,
        "workers": opts.get("workers"),
        "devices": tuple(devices) if devices else None,
    }
