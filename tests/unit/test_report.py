"""Aggregation: lr chosen on validation, single-task baselines and delta-m by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mtlbench import report

GROUP = {
    "data_sha256": "d",
    "split_sha256": "s",
    "image_size": "32",
    "backbone": "r",
    "epochs": "3",
}


def _trial(strategy, lr, seed, tasks="age,gender,race", status="finished", **metrics):
    row = {
        "run_id": f"{strategy}-{lr}-{seed}",
        "parent_run_id": "p",
        "strategy": strategy,
        "lr": lr,
        "seed": seed,
        "status": status,
        "tasks": tasks,
        **GROUP,
    }
    for col in (
        report.SELECTION_METRIC,
        "best_epoch",
        *report.VAL_METRICS,
        *report.TEST_METRICS,
        "test/score",
        "test/delta_m",
    ):
        row[col] = metrics.get(col, math.nan)
    return row


def test_delta_m_formula_by_hand():
    base = {"age": 10.0, "gender": 0.8, "race": 0.5}
    # age 10% worse (+10), gender 10% better (-(0.88-0.8)/0.8 = -10), race equal (0)
    assert report.delta_m({"age": 11.0, "gender": 0.88, "race": 0.5}, base) == pytest.approx(0.0)
    # only age 20% better: (-20)/3
    got = report.delta_m({"age": 8.0, "gender": 0.8, "race": 0.5}, base)
    assert got == pytest.approx(-20 / 3)


def test_lr_is_chosen_on_validation_and_reported_on_test():
    rows = [
        _trial("sum", 1e-3, 0, **{"best_val/score": 0.5, "test/age_mae": 9.0}),
        _trial("sum", 1e-3, 1, **{"best_val/score": 0.7, "test/age_mae": 11.0}),
        _trial("sum", 1e-2, 0, **{"best_val/score": 0.4, "test/age_mae": 20.0}),
        _trial("sum", 1e-2, 1, **{"best_val/score": 0.9, "test/age_mae": 30.0}),
        _trial("sum", 1e-1, 0, status="diverged"),
    ]
    summary = report.summarize(pd.DataFrame(rows))
    row = summary.iloc[0]
    assert row["best_lr"] == 1e-3  # mean val 0.6 beats 0.65; test numbers play no part
    assert row["test/age_mae"] == 10.0
    assert row["test/age_mae_std"] == pytest.approx(math.sqrt(2))
    assert row["n_diverged"] == 1 and row["n_trials"] == 5 and row["n_seeds"] == 2


def test_single_task_baselines_and_delta_m_for_multitask_trials():
    rows = [
        # stl:age at two lrs: 1e-3 has the better validation MAE
        _trial("stl:age", 1e-3, 0, tasks="age", **{"best_val/age_mae": 8.0, "test/age_mae": 10.0}),
        _trial("stl:age", 1e-2, 0, tasks="age", **{"best_val/age_mae": 9.0, "test/age_mae": 5.0}),
        _trial(
            "stl:gender",
            1e-3,
            0,
            tasks="gender",
            **{"best_val/gender_acc": 0.8, "test/gender_acc": 0.8},
        ),
        _trial(
            "stl:race", 1e-3, 0, tasks="race", **{"best_val/race_acc": 0.5, "test/race_acc": 0.5}
        ),
        _trial(
            "sum", 1e-3, 0, **{"test/age_mae": 11.0, "test/gender_acc": 0.88, "test/race_acc": 0.5}
        ),
        _trial(
            "dwa", 1e-3, 0, **{"test/age_mae": 8.0, "test/gender_acc": 0.8, "test/race_acc": 0.5}
        ),
    ]
    tidy = pd.DataFrame(rows)
    base = report.single_task_baselines(tidy)
    got = dict(zip(base["task"], base["baseline"], strict=True))
    assert got == {"age": 10.0, "gender": 0.8, "race": 0.5}
    out = report.with_delta_m(tidy, base).set_index("strategy")["test/delta_m"]
    assert out["sum"] == pytest.approx(0.0)
    assert out["dwa"] == pytest.approx(-20 / 3)
    assert out["stl:age"].isna().all()  # baselines themselves get no delta-m


def test_baselines_do_not_cross_groups():
    rows = [
        _trial("stl:age", 1e-3, 0, tasks="age", **{"best_val/age_mae": 8.0, "test/age_mae": 10.0}),
        _trial(
            "stl:gender",
            1e-3,
            0,
            tasks="gender",
            **{"best_val/gender_acc": 0.8, "test/gender_acc": 0.8},
        ),
        _trial(
            "stl:race", 1e-3, 0, tasks="race", **{"best_val/race_acc": 0.5, "test/race_acc": 0.5}
        ),
        {
            **_trial(
                "sum",
                1e-3,
                0,
                **{"test/age_mae": 11.0, "test/gender_acc": 0.88, "test/race_acc": 0.5},
            ),
            "image_size": "64",
        },
    ]
    tidy = pd.DataFrame(rows)
    out = report.with_delta_m(tidy, report.single_task_baselines(tidy))
    assert out["test/delta_m"].isna().all()
