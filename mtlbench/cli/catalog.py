"""``mtlbench strategies``: what is registered."""

from __future__ import annotations

from mtlbench.cli.common import app


@app.command("strategies")
def strategies_cmd() -> None:
    """List every registered weighting strategy."""
    from rich.console import Console
    from rich.table import Table

    from mtlbench import weighting

    table = Table(title="Registered strategies")
    for col in ("name", "needs", "paper", "hyperparameters (default)"):
        table.add_column(col)
    for name in weighting.available():
        cls = weighting.get(name)
        hps = ", ".join(f"{h.name}={h.format(h.default)}" for h in cls.hparams) or "–"
        table.add_row(name, cls.needs.value, cls.paper, hps)
    Console().print(table)
