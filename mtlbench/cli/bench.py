"""``mtlbench bench``: measure the harness's speed."""

from __future__ import annotations

import typer

from mtlbench.cli.common import _guard, _split_strategies, app


@app.command()
def bench(
    batch_size: int = typer.Option(64, "--batch-size"),
    image_size: int | None = typer.Option(
        None, "--image-size", help="Square side in px (default: the dataset's)."
    ),
    backbone: str | None = typer.Option(
        None, "--backbone", help="(default: the dataset's; resnet18 for utkface)"
    ),
    dataset: str = typer.Option(
        "utkface",
        "--dataset",
        help="Whose tasks (heads, T) and image channels --strategies and --concurrency use; "
        "the default benchmark and --model-only compare against UTKFace's tutorial.",
    ),
    steps: int | None = typer.Option(
        None,
        "--steps",
        help="Timed training steps per variant (default 20; with --strategies, per round: 3).",
    ),
    device: str = typer.Option("cpu", "--device"),
    strategies: str | None = typer.Option(
        None,
        "--strategies",
        "-s",
        help="Instead of the model table: time and peak memory of these strategies (a,b|all) "
        "relative to sum, plus the batched/sequential Jacobian baselines.",
    ),
    rounds: int = typer.Option(
        3, "--rounds", help="With --strategies: interleaved rounds over all variants."
    ),
    markdown: bool = typer.Option(False, "--markdown", help="With --strategies: a Markdown table."),
    data: str | None = typer.Option(
        None, "--data", help="Images for the pipeline benchmark (default: synthetic)."
    ),
    max_samples: int = typer.Option(
        3000, "--max-samples", help="Pipeline benchmark: images per epoch (stratified subset)."
    ),
    cache_dir: str | None = typer.Option(None, "--cache-dir", help="Decoded-image cache."),
    model_only: bool = typer.Option(
        False, "--model-only", help="Only the training-step table (random tensors, no data)."
    ),
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        help="Study throughput: a small grid run sequentially, then with this many workers.",
    ),
) -> None:
    """Measure speed. Default: the original tutorial's whole pipeline (per-item PIL decoding,
    three backbone passes) against mtlbench's, on the same images: data loading alone, the
    training step alone and a whole epoch. --model-only: just the step. --strategies: each
    weighting strategy's step time and peak memory relative to sum (docs/strategies.md).
    --concurrency K: trials/hour of a small grid, sequential against K worker processes."""

    def go() -> str:
        from mtlbench.config import DataConfig
        from mtlbench.data import registry
        from mtlbench.mtl.tasks import UTKFACE_TASKS
        from mtlbench.training.prepare import resolve_device

        plugin = registry.get(dataset)
        size = image_size or plugin.default_image_size
        net = backbone or plugin.default_backbone
        if concurrency is None and strategies is None and plugin.tasks != UTKFACE_TASKS:
            raise ValueError(
                f"the default benchmark and --model-only time the UTKFace tutorial's three "
                f"heads; dataset {dataset!r} has other tasks: use --strategies or --concurrency"
            )
        if concurrency is not None:
            from mtlbench.bench.study import study_throughput

            dc = DataConfig(source=data, image_size=size, cache_dir=cache_dir, dataset=dataset)
            result = study_throughput(
                dc.source,
                workers=concurrency,
                cache_dir=dc.cache_path,
                image_size=size,
                backbone=net,
                max_samples=max_samples,
                device=device,
                dataset=dataset,
            )
            return result.table()
        if strategies is None and not model_only:
            from mtlbench.bench.pipeline import pipeline_benchmark

            dc = DataConfig(source=data, image_size=size, cache_dir=cache_dir)
            report = pipeline_benchmark(
                dc.source,
                image_size=size,
                batch_size=batch_size,
                max_samples=max_samples,
                backbone=net,
                device=resolve_device(device),
                cache_dir=dc.cache_path,
            )
            return report.table()

        if strategies is not None:
            from mtlbench import weighting
            from mtlbench.bench.strategies import bench_strategies, strategies_table

            names = _split_strategies(strategies)
            if "all" in names:
                names = weighting.available()
            for name in names:
                weighting.resolve(name)
            rows = bench_strategies(
                names,
                backbone=net,
                batch_size=batch_size,
                image_size=size,
                steps=steps or 3,
                rounds=rounds,
                device=resolve_device(device),
                progress=lambda msg: typer.echo(msg, err=True),
                tasks=plugin.tasks.tasks,
                channels=plugin.channels,
            )
            return strategies_table(rows, markdown=markdown)

        from mtlbench.bench.throughput import model_throughput, throughput_table

        rows_model = model_throughput(
            backbone=net,
            batch_size=batch_size,
            image_size=size,
            steps=steps or 20,
            device=resolve_device(device),
        )
        return throughput_table(rows_model)

    typer.echo(_guard(go))
