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
    table = Table(title="Registered datasets (mtlbench run --dataset NAME)")
    for col in ("dataset", "task", "kind", "outputs", "metric", "direction", "about"):
        table.add_column(col)
    for plugin in plugins.values():
        for i, t in enumerate(plugin.tasks):
            direction = "higher is better" if t.higher_is_better else "lower is better"
            about = f"{plugin.description} (defaults: {plugin.default_backbone}, "
            about += f"{plugin.default_image_size} px)"
            table.add_row(
                plugin.name if i == 0 else "",
                t.name,
                t.kind,
                str(t.n_outputs),
                t.metric + (f" ({t.unit})" if t.unit else ""),
                direction,
                about if i == 0 else "",
                end_section=i == len(plugin.tasks) - 1,
            )
    Console().print(table)
