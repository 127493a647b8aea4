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
