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


@app.command("datasets")
def datasets_cmd() -> None:
    """List every registered dataset (built-in and plug-ins) with its tasks."""
    from rich.console import Console
    from rich.table import Table

    from mtlbench.cli.common import _guard
    from mtlbench.data import registry

    plugins = _guard(registry.all_plugins)
    table = Table(title="Registered datasets")
    for col in ("name", "description", "tasks (kind, outputs, metric)", "defaults"):
        table.add_column(col)
    for plugin in plugins.values():
        tasks = "\n".join(
            f"{t.name}: {t.kind}, {t.n_outputs}, {t.metric} "
            f"({'max' if t.higher_is_better else 'min'}{', ' + t.unit if t.unit else ''})"
            for t in plugin.tasks
        )
        defaults = f"{plugin.default_image_size} px, {plugin.default_backbone}"
        table.add_row(plugin.name, plugin.description, tasks, defaults)
    Console().print(table)
