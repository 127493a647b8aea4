"""``mtlbench data ...``: look at a dataset before training on it."""

from __future__ import annotations

import typer

from mtlbench.cli.common import _guard, data_app


@data_app.command("inspect")
def data_inspect(
    path: str = typer.Argument(..., help="UTKFace folder or archive, or 'synthetic'."),
    cache_dir: str | None = typer.Option(None, "--cache-dir"),
) -> None:
    """Counts, label distributions and skipped files (with reasons) of a dataset."""

    def go() -> str:
        from mtlbench.config import DataConfig
        from mtlbench.data import inspect_dataset

        cfg = DataConfig(source=path, cache_dir=cache_dir)
        return inspect_dataset(cfg.source, cache_dir=cfg.cache_path).to_text()

    typer.echo(_guard(go))
