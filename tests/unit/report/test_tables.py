"""Aggregation: lr chosen on validation, single-task baselines and delta-m by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats as scipy_stats

from mtlbench.report import stats
from mtlbench.report import tables as report

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


# --- statistics -----------------------------------------------------------------------------

T_975 = {2: 4.302652729911275, 3: 3.182446305284263}  # Student's t quantiles, from tables


def test_t_interval_by_hand():
    ci = stats.t_interval([1.0, 2.0, 3.0, 4.0])
    s = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)  # sample std of 1..4
    assert ci.mean == 2.5 and ci.n == 4
    assert ci.std == pytest.approx(s)
    assert ci.half == pytest.approx(T_975[3] * s / 2)
    assert (ci.low, ci.high) == pytest.approx((2.5 - ci.half, 2.5 + ci.half))
    three = stats.t_interval([10.0, 11.0, 12.0, math.nan])  # NaN (a diverged seed) ignored
    assert three.n == 3 and three.half == pytest.approx(T_975[2] * 1.0 / math.sqrt(3))
    one = stats.t_interval([7.0])
    assert one.mean == 7.0 and math.isnan(one.half)
    assert stats.t_interval([]).n == 0
    with pytest.raises(ValueError, match="confidence"):
        stats.t_interval([1.0, 2.0], confidence=95)


def test_paired_t_test_matches_scipy_on_common_seeds():
    a = {0: 1.0, 1: 2.5, 2: 2.0, 7: 100.0}
    b = {0: 0.5, 1: 1.0, 2: 1.9, 3: -5.0}
    got = stats.paired_t_test(a, b)
    want = scipy_stats.ttest_rel([1.0, 2.5, 2.0], [0.5, 1.0, 1.9])
    assert got.n_pairs == 3
    assert got.p_value == pytest.approx(want.pvalue)
    assert got.mean_diff == pytest.approx((0.5 + 1.5 + 0.1) / 3)
    same = stats.paired_t_test({0: 1.0, 1: 2.0}, {0: 0.0, 1: 1.0})  # constant difference
    assert same.n_pairs == 2 and same.mean_diff == 1.0 and math.isnan(same.p_value)
    assert math.isnan(stats.paired_t_test({0: 1.0}, {0: 2.0}).p_value)


def test_holm_by_hand():
    got = stats.holm([0.01, 0.04, 0.03, math.nan])
    # sorted: 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> monotone 0.06
    assert got[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(got[3])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_pareto_front_on_a_hand_made_set():
    pts = pd.DataFrame(
        {
            "name": ["A", "B", "C", "D", "E", "F", "G"],
            "mae": [1.0, 2.0, 3.0, 0.5, 2.0, 2.0, math.nan],  # lower is better
            "acc": [1.0, 3.0, 2.0, 0.5, 3.0, 1.0, 9.0],  # higher is better
        }
    )
    # C is dominated by B, F by A (equal acc, worse mae), G has no mae; B and E tie (both kept)
    front = stats.pareto_front(pts, "mae", "acc", x_higher=False, y_higher=True)
    assert list(front["name"]) == ["D", "A", "B", "E"]
    both_max = stats.pareto_front(pts, "mae", "acc", x_higher=True, y_higher=True)
    assert set(both_max["name"]) == {"B", "C", "E"}
    with pytest.raises(ValueError, match="columns"):
        stats.pareto_front(pts, "mae", "nope", x_higher=False, y_higher=True)


# --- leaderboard ----------------------------------------------------------------------------


def _seeded(strategy, lr, ages, dms, val=0.5, **kw):
    return [
        _trial(
            strategy,
            lr,
            seed,
            **{"best_val/score": val, "test/age_mae": age, "test/delta_m": dm},
            **kw,
        )
        for seed, (age, dm) in enumerate(zip(ages, dms, strict=True))
    ]


def test_summary_has_t_intervals_ranks_and_paired_p_values():
    rows = [
        *_seeded("sum", 1e-3, [10.0, 11.0, 12.0], [1.0, 2.0, 4.0]),
        *_seeded("dwa", 1e-3, [9.0, 9.5, 11.0], [0.0, 1.5, 2.0]),
        *_seeded("pcgrad", 1e-3, [12.0, 12.0, 13.0], [5.0, 4.0, 6.0]),
        _trial("pcgrad", 1e-2, 0, status="pruned"),
        *_seeded("static:1,2,0", 1e-3, [8.0, 8.0, 9.0], [-1.0, -2.0, 0.0]),
    ]
    summary = report.summarize(pd.DataFrame(rows)).set_index("strategy")
    assert summary.loc["sum", "test/age_mae"] == 11.0
    assert summary.loc["sum", "test/age_mae_ci"] == pytest.approx(T_975[2] / math.sqrt(3))
    dm_sum, dm_dwa = [1.0, 2.0, 4.0], [0.0, 1.5, 2.0]
    p = scipy_stats.ttest_rel(dm_dwa, dm_sum).pvalue
    assert summary.loc["dwa", "p_vs_ref"] == pytest.approx(p)
    assert summary.loc["dwa", "diff_vs_ref"] == pytest.approx((-1.0 - 0.5 - 2.0) / 3)
    assert math.isnan(summary.loc["sum", "p_vs_ref"])
    # ranked among methods only, by mean delta-m: dwa 1.17 < sum 2.33 < pcgrad 5
    assert summary.loc[["dwa", "sum", "pcgrad"], "rank"].tolist() == [1, 2, 3]
    assert math.isnan(summary.loc["static:1,2,0", "rank"])
    assert summary.loc["static:1,2,0", "kind"] == report.KIND_SWEEP
    assert summary.loc["pcgrad", "n_pruned"] == 1 and summary.loc["pcgrad", "n_trials"] == 4
    # Holm within each family by hand: the methods {dwa, pcgrad} (m = 2), the sweep point alone.
    p_dwa = scipy_stats.ttest_rel(dm_dwa, dm_sum).pvalue
    p_pc = scipy_stats.ttest_rel([5.0, 4.0, 6.0], dm_sum).pvalue
    p_static = scipy_stats.ttest_rel([-1.0, -2.0, 0.0], dm_sum).pvalue
    low, high = sorted([p_dwa, p_pc])
    adjusted = {low: min(1.0, 2 * low), high: max(min(1.0, 2 * low), min(1.0, high))}
    assert summary.loc["dwa", "p_vs_ref_holm"] == pytest.approx(adjusted[p_dwa])
    assert summary.loc["pcgrad", "p_vs_ref_holm"] == pytest.approx(adjusted[p_pc])
    assert summary.loc["static:1,2,0", "p_vs_ref_holm"] == pytest.approx(p_static)
    mixed = stats.holm([p_dwa, p_pc, p_static])[2]  # one family for all: what issue 11 fixed
    assert mixed != pytest.approx(p_static)
    assert list(summary.index[:3]) == ["dwa", "sum", "pcgrad"]  # sorted by rank


def test_ranking_falls_back_to_test_score_without_baselines():
    rows = [
        _trial("sum", 1e-3, 0, **{"best_val/score": 0.5, "test/score": 0.6}),
        _trial("dwa", 1e-3, 0, **{"best_val/score": 0.5, "test/score": 0.4}),
    ]
    tidy = pd.DataFrame(rows)
    assert report.primary_metric(tidy) == "test/score"
    summary = report.summarize(tidy).set_index("strategy")
    assert summary.loc["dwa", "rank"] == 1 and summary.loc["sum", "rank"] == 2


def test_repeats_keep_the_newest_finished_trial():
    old = {**_trial("sum", 1e-3, 0, **{"test/age_mae": 99.0}), "start_time": 1}
    new = {**_trial("sum", 1e-3, 0, **{"test/age_mae": 9.0}), "start_time": 2}
    newest_failed = {**_trial("sum", 1e-3, 0, status="failed"), "start_time": 3}
    other = {**_trial("sum", 1e-3, 1), "start_time": 0}
    kept, dropped = report.drop_repeats(pd.DataFrame([old, new, newest_failed, other]))
    assert dropped == 2
    assert sorted(kept["seed"]) == [0, 1]
    assert kept.set_index("seed").loc[0, "test/age_mae"] == 9.0


def test_groups_are_split_largest_first():
    rows = [_trial("sum", 1e-3, s) for s in range(3)]
    rows += [{**_trial("sum", 1e-3, s), "image_size": "64"} for s in range(2)]
    groups = report.split_groups(pd.DataFrame(rows))
    assert [len(g) for g in groups] == [3, 2]
    assert set(groups[1]["image_size"]) == {"64"}
    assert "64 px" in report.group_label(groups[1])


def test_fixed_weight_point_with_a_zero_weight_gets_delta_m():
    rows = [
        _trial("stl:age", 1e-3, 0, tasks="age", **{"best_val/age_mae": 8.0, "test/age_mae": 10.0}),
        _trial(
            "stl:gender",
            1e-3,
            0,
            tasks="gender",
            **{"best_val/gender_acc": 1, "test/gender_acc": 0.8},
        ),
        _trial("stl:race", 1e-3, 0, tasks="race", **{"best_val/race_acc": 1, "test/race_acc": 0.5}),
        _trial(
            "static:0,1,1",
            1e-3,
            0,
            tasks="gender,race",
            **{"test/age_mae": 20.0, "test/gender_acc": 0.8, "test/race_acc": 0.5},
        ),
    ]
    tidy = pd.DataFrame(rows)
    out = report.with_delta_m(tidy, report.single_task_baselines(tidy))
    got = out.set_index("strategy").loc["static:0,1,1", "test/delta_m"]
    assert got == pytest.approx(100 / 3 * (20.0 - 10.0) / 10.0)


def test_untrained_heads_of_single_task_models_are_blank_in_the_summary():
    rows = [
        _trial(
            "stl:race",
            1e-3,
            s,
            tasks="race",
            **{"best_val/score": 0.5, "test/race_acc": 0.5, "test/age_mae": 30.0},
        )
        for s in range(2)
    ]
    summary = report.summarize(pd.DataFrame(rows)).iloc[0]
    assert summary["test/race_acc"] == 0.5 and math.isnan(summary["test/age_mae"])
    assert summary["kind"] == report.KIND_SINGLE and math.isnan(summary["rank"])


def test_a_diverged_seed_counts_against_its_lr():
    # lr 1e-3: seeds 0, 1 validate best (0.3) but seed 2 diverged; lr 1e-4: all finished (0.5).
    rows = [
        _trial("famo", 1e-3, 0, **{"best_val/score": 0.3}),
        _trial("famo", 1e-3, 1, **{"best_val/score": 0.3}),
        _trial("famo", 1e-3, 2, status="diverged"),
        *(_trial("famo", 1e-4, s, **{"best_val/score": 0.5}) for s in range(3)),
        # both lrs lose one seed: the validation score decides
        _trial("dwa", 1e-3, 0, **{"best_val/score": 0.3}),
        _trial("dwa", 1e-3, 1, status="failed"),
        _trial("dwa", 1e-4, 0, **{"best_val/score": 0.5}),
        _trial("dwa", 1e-4, 1, status="diverged"),
        # every seed of 1e-2 diverged: nothing to report there
        _trial("sum", 1e-2, 0, status="diverged"),
        _trial("sum", 1e-4, 0, **{"best_val/score": 0.9}),
    ]
    chosen = dict(report.choose_lr(pd.DataFrame(rows)).itertuples(index=False))
    assert chosen == {"famo": 1e-4, "dwa": 1e-3, "sum": 1e-4}
    # --log-model best logs the model of the same lr (its best seed)
    from mtlbench.runs.models import choose

    raw = pd.DataFrame(
        [
            {
                "param.strategy": r["strategy"],
                "param.lr": f"{r['lr']:g}",
                "status": r["status"],
                "best_val/score": r["best_val/score"],
            }
            for r in rows
        ]
    )
    picked = raw.iloc[choose(raw, "best")]
    assert dict(zip(picked["param.strategy"], picked["param.lr"], strict=True)) == {
        "famo": "0.0001",
        "dwa": "0.001",
        "sum": "0.0001",
    }


def test_a_two_stage_study_keeps_the_lr_it_chose_on_the_common_seed():
    # Stage 1 ran both lrs on seed 0 and chose 1e-3 (0.40 < 0.50); stage 2 added seeds 1 and 2
    # at 1e-3 only, which validate worse (0.60). Averaging all seeds would switch to 3e-4
    # (0.53 > 0.50) on a 3-seed mean against one seed; the rule judges lrs on seed 0, the one
    # seed both have, and keeps 1e-3, whose 3 seeds are then reported.
    rows = [
        _trial("dwa", 1e-3, 0, **{"best_val/score": 0.40, "test/score": 0.4}),
        _trial("dwa", 1e-3, 1, **{"best_val/score": 0.60, "test/score": 0.6}),
        _trial("dwa", 1e-3, 2, **{"best_val/score": 0.60, "test/score": 0.6}),
        _trial("dwa", 3e-4, 0, **{"best_val/score": 0.50, "test/score": 0.5}),
    ]
    tidy = pd.DataFrame(rows)
    assert report.common_seeds(tidy) == {0}
    assert dict(report.choose_lr(tidy).itertuples(index=False)) == {"dwa": 1e-3}
    assert sorted(report.chosen_trials(tidy)["seed"]) == [0, 1, 2]
    # a failed seed outside the common set does not count against its lr either
    failed = tidy.copy()
    failed.loc[1, "status"] = "diverged"
    assert dict(report.choose_lr(failed).itertuples(index=False)) == {"dwa": 1e-3}
    # the seed 0 of 1e-3 diverging does: 3e-4 then wins on the common seed
    failed.loc[0, "status"] = "diverged"
    assert dict(report.choose_lr(failed).itertuples(index=False)) == {"dwa": 3e-4}
    # the report says which seeds chose the lr
    from mtlbench.report import verdict_text, verdicts

    assert verdicts.selection_seeds(tidy, {"dwa": 1e-3}) == {"dwa": (0,)}
    full = tidy[tidy["seed"] == 0]
    assert verdicts.selection_seeds(full, {"dwa": 1e-3}) == {}
    text = verdict_text.selection_sentence({"dwa": (0,), "sum": (0,)}, 2)
    assert text.startswith("The learning rates were compared on seed 0 for all 2 strategies:")
    text = verdict_text.selection_sentence({"dwa": (0,), "sum": (0, 1)}, 3)
    assert "seed 0 for dwa; seeds 0, 1 for sum" in text
