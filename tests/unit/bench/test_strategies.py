"""The strategy benchmark on a tiny model: its rows, ratios and tables (not its timings)."""

import math

from typer.testing import CliRunner

from mtlbench.bench.strategies import bench_strategies, strategies_table
from mtlbench.cli.app import app


def test_rows_are_relative_to_sum_and_include_the_jacobian_baselines():
    rows = bench_strategies(
        ["mean", "mgda_ub", "pcgrad"],
        backbone="tiny",
        batch_size=4,
        image_size=16,
        steps=1,
        rounds=1,
        warmup=0,
    )
    names = [r.name for r in rows]
    assert names[:4] == ["sum", "mean", "mgda_ub", "pcgrad"]
    assert names[4:] == [
        "jacobian/representation:batched",
        "jacobian/representation:sequential",
        "jacobian/shared:batched",
        "jacobian/shared:sequential",
    ]
    assert rows[0].time_ratio == 1.0 and rows[0].memory_ratio == 1.0
    assert all(r.step_ms > 0 and math.isfinite(r.time_ratio) for r in rows)
    assert all(r.peak_mb > 0 for r in rows)  # the profiler saw the step's allocations
    by_name = {r.name: r for r in rows}
    assert (
        by_name["mean"].mode == "-" and by_name["jacobian/shared:sequential"].mode == "sequential"
    )
    # the batched shared Jacobian holds 3 gradients of every backbone parameter at once
    from mtlbench.mtl.model import TinyBackbone

    n_shared = sum(p.numel() for p in TinyBackbone().parameters())
    assert by_name["jacobian/shared:batched"].peak_mb >= 3 * n_shared * 4 / 1e6
    text = strategies_table(rows)
    assert text.splitlines()[0].split()[:4] == ["strategy", "needs", "jacobian", "ms/step"]
    assert "<= 2.6" in text and "<= 1.05" in text
    md = strategies_table(rows, markdown=True)
    assert md.startswith("| strategy | needs |") and md.count("\n") == len(rows) + 1


def test_cli_bench_strategies_prints_the_table():
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "--strategies",
            "static:1,0.5,2",
            "--backbone",
            "tiny",
            "--batch-size",
            "4",
            "--image-size",
            "16",
            "--steps",
            "1",
            "--rounds",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "static:1,0.5,2" in result.output and "jacobian/shared:sequential" in result.output


def test_cli_bench_refuses_unknown_strategies():
    result = CliRunner().invoke(app, ["bench", "--strategies", "nope", "--backbone", "tiny"])
    assert result.exit_code == 2
    assert "unknown strategy 'nope'" in result.output


def test_a_dataset_plugin_sets_the_heads_the_channels_and_the_default_backbone():
    from mtlbench.data import registry
    from mtlbench.mtl.gray_backbones import LeNet
    from mtlbench.mtl.tasks import random_batch

    four = registry.get("multi-digits-4")
    x, y = random_batch(64, 16, tasks=four.tasks.tasks, channels=four.channels)
    assert x.shape == (64, 1, 16, 16) and y.shape == (64, 4)
    assert y.min() >= 0 and y.max() <= 9 and len(y.unique()) == 10
    rows = bench_strategies(
        ["mgda"],
        backbone="lenet",
        batch_size=4,
        image_size=16,
        steps=1,
        rounds=1,
        warmup=0,
        tasks=four.tasks.tasks,
        channels=four.channels,
    )
    by_name = {r.name: r for r in rows}
    # T = 4: the batched shared Jacobian holds 4 gradients of every LeNet parameter.
    n_shared = sum(p.numel() for p in LeNet().parameters())
    assert by_name["jacobian/shared:batched"].peak_mb >= 4 * n_shared * 4 / 2**20
    result = CliRunner().invoke(
        app,
        [
            *("bench", "--dataset", "multi-digits-4", "--strategies", "static:1,2,3,4"),
            *("--batch-size", "4", "--image-size", "16", "--steps", "1", "--rounds", "1"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "static:1,2,3,4" in result.output
    result = CliRunner().invoke(app, ["bench", "--dataset", "multi-digits", "--model-only"])
    assert result.exit_code == 2
    assert "dataset 'multi-digits' has other tasks: use --strategies" in result.output
