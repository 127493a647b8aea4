"""Figures: one colour per strategy everywhere, the sweep's points, and every figure renders."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mtlbench.report import plots
from mtlbench.report import tables as report

STRATEGIES = ("sum", "dwa", "pcgrad", "static:2,1,0", "stl:age", "stl:gender", "stl:race")


def _tidy() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for strategy in STRATEGIES:
        tasks = strategy.split(":")[1] if strategy.startswith("stl") else "age,gender,race"
        for lr in (1e-3, 1e-2):
            for seed in range(3):
                bad = lr == 1e-2
                rows.append(
                    {
                        "run_id": f"{strategy}-{lr}-{seed}",
                        "strategy": strategy,
                        "lr": lr,
                        "seed": seed,
                        "status": "finished",
                        "tasks": tasks,
                        "best_val/score": 0.5 + 0.2 * bad + 0.01 * seed,
                        "test/age_mae": 10 + 3 * bad + rng.normal(0, 0.3),
                        "test/gender_acc": 0.8 - 0.1 * bad + rng.normal(0, 0.01),
                        "test/race_acc": 0.6 - 0.1 * bad + rng.normal(0, 0.01),
                        "test/score": 0.5,
                        "best_val/age_mae": 10 + 3 * bad,
                        "best_val/gender_acc": 0.8 - 0.1 * bad,
                        "best_val/race_acc": 0.6 - 0.1 * bad,
                        "test/delta_m": np.nan if "stl" in strategy else rng.normal(0, 2),
                    }
                )
    return pd.DataFrame(rows)


def _histories(tidy: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for run_id in tidy["run_id"]:
        for step in range(4):
            for key, value in (
                ("val/age_mae", 20 - step),
                ("val/gender_acc", 0.6 + 0.05 * step),
                ("val/race_acc", 0.3 + 0.05 * step),
                ("weight/age", 1.0 + 0.1 * step * ("dwa" in run_id)),
                ("weight/gender", 1.0),
                ("weight/race", 1.0),
            ):
                rows.append({"run_id": run_id, "key": key, "step": step, "value": value})
    return pd.DataFrame(rows)


def test_palette_is_stable_and_distinguishes_kinds():
    a = plots.strategy_palette(list(STRATEGIES))
    b = plots.strategy_palette(list(reversed(STRATEGIES)) * 2)
    assert a == b
    methods = [a["sum"], a["dwa"], a["pcgrad"]]
    assert len(set(methods)) == 3
    assert a["sum"] == plots.strategy_palette(["sum", "famo"])["sum"]  # sum always first colour
    assert a["static:2,1,0"] == plots.SWEEP_COLOUR
    assert a["stl:age"] == a["stl:race"] == plots.SINGLE_COLOUR
    assert plots.SWEEP_COLOUR not in methods and plots.SINGLE_COLOUR not in methods


def test_sweep_points_use_each_chosen_lr_and_add_sum_as_equal_weights():
    tidy = _tidy()
    summary = report.summarize(tidy)
    points = plots._sweep_points(tidy, summary).set_index("label")
    assert list(points.index) == ["2,1,0", "1,1,1 (sum)"]
    sum_at_best = tidy[(tidy["strategy"] == "sum") & (tidy["lr"] == 1e-3)]
    assert points.loc["1,1,1 (sum)", "test/age_mae"] == pytest.approx(
        sum_at_best["test/age_mae"].mean()
    )


def _check_png(path: Path, min_width: int) -> None:
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width >= min_width and img.height >= 250
        pixels = np.asarray(img.convert("L"), dtype=float)
    assert pixels.std() > 10  # not a blank canvas


def test_every_figure_renders(tmp_path: Path):
    tidy = _tidy()
    summary = report.summarize(tidy)
    baselines = report.single_task_baselines(tidy.assign(**dict.fromkeys(report.GROUP_PARAMS, "g")))
    palette = plots.strategy_palette(list(tidy["strategy"]))
    histories = _histories(tidy)
    made = [
        plots.curves_figure(histories, tidy, summary, palette, tmp_path / "curves.png"),
        plots.weights_figure(histories, tidy, summary, palette, tmp_path / "weights.png"),
        plots.lr_figure(tidy, summary, "test/delta_m", palette, tmp_path / "lr.png"),
        plots.pareto_figure(tidy, summary, baselines, palette, tmp_path / "pareto.png"),
        plots.delta_m_figure(tidy, summary, "test/delta_m", palette, tmp_path / "dm.png"),
    ]
    for path in made:
        _check_png(path, min_width=600)
    assert not math.isnan(summary.set_index("strategy").loc["dwa", "test/delta_m"])


def test_figures_survive_a_study_where_nothing_finished(tmp_path: Path):
    tidy = _tidy().iloc[:6].assign(status="diverged", **dict.fromkeys(report.GROUP_PARAMS, "g"))
    for col in ("best_val/score", "test/age_mae", "test/delta_m"):
        tidy[col] = np.nan
    summary = report.summarize(tidy)
    assert summary["n_diverged"].sum() == 6 and summary["n_seeds"].sum() == 0
    palette = plots.strategy_palette(list(tidy["strategy"]))
    empty = report.single_task_baselines(tidy)
    plots.delta_m_figure(tidy, summary, "test/score", palette, tmp_path / "dm.png")
    plots.pareto_figure(tidy, summary, empty, palette, tmp_path / "pareto.png")
    plots.lr_figure(tidy, summary, "test/score", palette, tmp_path / "lr.png")
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("dm.png", "pareto.png", "lr.png"))


def test_nine_methods_get_nine_colours_none_of_them_grey():
    names = ["sum", "dwa", "famo", "imtl", "mgda_ub", "pcgrad", "uncertainty", "db_mtl", "rlw"]
    palette = plots.strategy_palette([*names, "static:1,2,0"])
    colours = [palette[n] for n in names]
    assert len(set(colours)) == 9
    assert all(max(c) - min(c) > 0.05 for c in colours)  # no grey among the methods


def test_pareto_panels_wrap_after_three_columns(tmp_path: Path):
    """5 tasks give 10 metric pairs: 4 rows of at most 3 panels (the last row 1), not one row
    10 panels wide."""
    from mtlbench.mtl.tasks import Task, TaskSet

    names = [f"d{i}" for i in range(5)]
    tasks = TaskSet(
        tuple(Task(n, i, "multiclass", 10, f"{n}_acc", True) for i, n in enumerate(names))
    )
    rng = np.random.default_rng(1)
    rows = [
        {
            "run_id": f"{s}-{seed}",
            "strategy": s,
            "lr": 1e-3,
            "seed": seed,
            "status": "finished",
            "tasks": ",".join(names),
            report.TASK_SPEC: tasks.to_json(),
            "best_val/score": 0.5,
            "test/score": 0.5,
            "test/delta_m": np.nan,
            **{f"test/{n}_acc": 0.8 + rng.normal(0, 0.01) for n in names},
            **{f"best_val/{n}_acc": 0.8 for n in names},
            **dict.fromkeys(report.GROUP_PARAMS, "g"),
        }
        for s in ("sum", "dwa")
        for seed in range(3)
    ]
    tidy = pd.DataFrame(rows)
    summary = report.summarize(tidy)
    palette = plots.strategy_palette(list(tidy["strategy"]))
    empty = report.single_task_baselines(tidy)
    path = plots.pareto_figure(tidy, summary, empty, palette, tmp_path / "pareto.png")
    width, height = Image.open(path).size
    # 3 panels of 5.4 in by 4 rows of 4.8 in at 110 dpi (+ legend and title): taller than wide,
    # and far from a 10-panel row (5,940 px)
    assert height > width and width < 4 * 5.4 * 110, (width, height)
