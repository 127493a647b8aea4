"""``mtlbench data ...``: look at a dataset before training on it."""

from __future__ import annotations

import typer

from mtlbench.cli.common import _guard, data_app


@data_app.command("inspect")
def data_inspect(
    path: str | None = typer.Argument(
        None,
        help="What the dataset's plug-in loads (UTKFace: a folder or archive, or 'synthetic', "
        "the default).",
    ),
    dataset: str = typer.Option(
        "utkface", "--dataset", help="A registered dataset (see: mtlbench datasets)."
    ),
    cache_dir: str | None = typer.Option(None, "--cache-dir"),
) -> None:
    """Counts, label distributions per task and skipped files of a dataset (UTKFace: every
    skipped file with its reason)."""

    def go() -> str:
        from mtlbench.config import DataConfig
        from mtlbench.data import registry

        cfg = DataConfig(source=path, cache_dir=cache_dir, dataset=dataset)
        plugin = registry.get(cfg.dataset)
        return registry.inspect_plugin(plugin, cfg.source, cache_dir=cfg.cache_path)

    typer.echo(_guard(go))
