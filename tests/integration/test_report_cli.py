"""`mtlbench report` on a fake MLflow study whose every number is known in advance."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats
from typer.testing import CliRunner

from mtlbench.cli.app import app
from mtlbench.tracking import KIND_TAG, Tracker
from tests.report_study import EXPERIMENT, SEEDS, FakeStudy, built_report, metrics_of

FIGURES = ("delta_m", "pareto", "curves", "weights", "lr_sensitivity")


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeStudy, Path]:
    return built_report(tmp_path_factory.getbasetemp() / "fake-report")


@pytest.fixture(scope="module")
def board(reported: tuple[FakeStudy, Path]) -> pd.DataFrame:
    return pd.read_csv(reported[1] / "leaderboard.csv")


def _row(board: pd.DataFrame, strategy: str, group: int = 1) -> pd.Series:
    rows = board[(board["strategy"] == strategy) & (board["group"] == group)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def _delta_m_by_seed(strategy: str) -> np.ndarray:
    # Baselines by hand: each stl model is best on validation at lr 1e-3; B_t = mean over seeds.
    base_age = np.mean([metrics_of("stl:age", 1e-3, s)[0] for s in SEEDS])
    base_gender = np.mean([metrics_of("stl:gender", 1e-3, s)[1] for s in SEEDS])
    base_race = np.mean([metrics_of("stl:race", 1e-3, s)[2] for s in SEEDS])
    out = []
    for s in SEEDS:
        age, gender, race = metrics_of(strategy, 1e-3, s)
        out.append(
            100
            / 3
            * (
                (age - base_age) / base_age
                - (gender - base_gender) / base_gender
                - (race - base_race) / base_race
            )
        )
    return np.array(out)


def _t_half(values: np.ndarray) -> float:
    return 4.302652729911275 * values.std(ddof=1) / math.sqrt(len(values))  # t(0.975, df=2)


def test_every_file_is_written(reported):
    _, out = reported
    for name in ("leaderboard.md", "leaderboard.csv", "trials.csv", "report.html"):
        assert (out / name).stat().st_size > 500, name
    for fig in FIGURES:
        for suffix in ("-g1", "-g2"):  # two groups: one set of figures each
            assert (out / f"{fig}{suffix}.png").stat().st_size > 10_000, fig + suffix


def test_lr_chosen_on_validation_and_ci_over_seeds(board):
    row = _row(board, "sum")
    assert row["best_lr"] == pytest.approx(1e-3)
    assert row["n_seeds"] == 3  # the older repeat of seed 0 (MAE +100) is left out
    ages = np.array([metrics_of("sum", 1e-3, s)[0] for s in SEEDS])
    assert row["test/age_mae"] == pytest.approx(ages.mean())
    assert row["test/age_mae_ci"] == pytest.approx(_t_half(ages))
    genders = np.array([metrics_of("sum", 1e-3, s)[1] for s in SEEDS])
    assert row["test/gender_acc_ci"] == pytest.approx(_t_half(genders))


def test_delta_m_ci_rank_and_paired_test_against_sum(board):
    dm = {s: _delta_m_by_seed(s) for s in ("sum", "dwa", "pcgrad")}
    for strategy, values in dm.items():
        row = _row(board, strategy)
        assert row["test/delta_m"] == pytest.approx(values.mean())
        assert row["test/delta_m_ci"] == pytest.approx(_t_half(values))
    dwa = _row(board, "dwa")
    assert dwa["p_vs_ref"] == pytest.approx(stats.ttest_rel(dm["dwa"], dm["sum"]).pvalue)
    assert dwa["diff_vs_ref"] == pytest.approx((dm["dwa"] - dm["sum"]).mean())
    assert math.isnan(_row(board, "sum")["p_vs_ref"])
    ranks = {s: _row(board, s)["rank"] for s in ("dwa", "sum", "pcgrad")}
    assert ranks == {"dwa": 1, "sum": 2, "pcgrad": 3}
    assert math.isnan(_row(board, "static:2,1,0")["rank"])  # sweep points are not ranked
    assert (board["rank_by"] == "test/delta_m").sum() >= 3


def test_diverged_trials_are_counted_not_hidden(board, reported):
    row = _row(board, "pcgrad")
    assert row["n_diverged"] == 1 and row["n_trials"] == 6 and row["n_seeds"] == 3
    md = (reported[1] / "leaderboard.md").read_text()
    assert re.search(r"\| pcgrad \|.*\| 1 / 0 / 0 \|", md), md
    assert "pcgrad: 1 diverged" in md


def test_groups_are_not_mixed(board, reported):
    other = _row(board, "sum", group=2)
    assert other["n_seeds"] == 2 and "64 px" in other["group_label"]
    assert set(board[board["group"] == 2]["strategy"]) == {"sum"}
    md = (reported[1] / "leaderboard.md").read_text()
    assert "2 groups of trials" in md and "left out" in md


def test_single_task_metrics_of_untrained_heads_are_blank(board):
    row = _row(board, "stl:age")
    assert not math.isnan(row["test/age_mae"])
    assert math.isnan(row["test/gender_acc"]) and math.isnan(row["test/race_acc"])
    assert row["kind"] == "single-task"


def test_header_states_budget_and_limits(reported):
    md = (reported[1] / "leaderboard.md").read_text()
    for text in (
        "UTKFace.tar.gz",
        "3500 / 750 / 750",
        "32 px",
        "tiny (initial weights: none)",
        "**epochs**: 3",
        "**learning-rate grid**: 0.001, 0.01",
        "**seeds**: 0, 1, 2",
        "paired t-test",
        "little power",
        "Holm",
        "750 images",
    ):
        assert text in md, text


def test_html_is_self_contained(reported):
    page = (reported[1] / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 2 * len(FIGURES)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(https?:|//)', page)
    assert "<script" not in page


def test_delta_m_is_logged_back_to_the_trial_runs(reported):
    study, _ = reported
    client = MlflowClient(tracking_uri=study.uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs(
        [exp.experiment_id],
        "tags.`mtlbench.kind` = 'trial' and params.strategy = 'dwa' and params.lr = '0.001'",
    )
    got = {int(r.data.params["seed"]): r.data.metrics["test/delta_m"] for r in runs}
    assert [got[s] for s in SEEDS] == pytest.approx(list(_delta_m_by_seed("dwa")))


def test_files_are_artifacts_of_a_report_run(reported):
    study, out = reported
    client = MlflowClient(tracking_uri=study.uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id], f"tags.`{KIND_TAG}` = 'report'")
    assert len(runs) == 1
    assert set(runs[0].data.tags["mtlbench.parent_run_ids"].split(",")) == set(study.parents)
    names = {a.path for a in client.list_artifacts(runs[0].info.run_id)}
    assert {"leaderboard.md", "leaderboard.csv", "report.html", "pareto-g1.png"} <= names
    assert names == {p.name for p in out.iterdir()}


def test_one_study_only_still_gets_delta_m_from_the_others(reported, tmp_path):
    from mtlbench.runs.study import write_outputs

    study, _ = reported
    summary, files = write_outputs(study.uri, EXPERIMENT, None, [study.parents[1]], tmp_path)
    assert set(summary["strategy"]) == {"pcgrad", "static:2,1,0", "static:0,1,2"}
    pcgrad = summary.set_index("strategy").loc["pcgrad"]
    assert pcgrad["test/delta_m"] == pytest.approx(_delta_m_by_seed("pcgrad").mean())
    assert {f.name for f in files} >= {"leaderboard.md", "report.html", "pareto.png"}


def test_empty_and_unknown_experiments_fail_in_one_line(reported):
    uri = reported[0].uri
    Tracker(uri, "empty").start_run("grid", tags={KIND_TAG: "study"}).end()
    result = CliRunner().invoke(app, ["report", "empty", "--tracking-uri", uri])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: experiment 'empty' has no trial runs yet; nothing to report"
    )
    result = CliRunner().invoke(app, ["report", "nope", "--tracking-uri", uri])
    assert result.exit_code == 2
    assert "no MLflow experiment named 'nope'" in result.output and "empty" in result.output
