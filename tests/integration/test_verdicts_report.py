"""The report's verdicts (issue 11) on a fake MLflow study whose every number is known.

Every expected number is recomputed here from the definitions: Holm by hand, seed-paired
delta-m intervals with scipy's t distribution, the power formula with scipy's quantiles.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from mtlbench.cli.app import app
from mtlbench.report import readme
from mtlbench.tracking import KIND_TAG, STATUS_TAG, Tracker

EXPERIMENT = "verdicts"
SEEDS = (0, 1, 2)
GOOD, OTHER = 1e-3, 3e-4
GROUP = {
    "data_sha256": "d" * 64,
    "split_sha256": "s" * 64,
    "image_size": "32",
    "backbone": "tiny",
    "epochs": "2",
    "n_test": "750",
}
ALL = "age,gender,race"
# Test metrics (age MAE, gender acc, race acc) at the good lr, before per-seed noise.
QUALITY = {
    "sum": (10.0, 0.80, 0.60),
    "uncertainty": (8.0, 0.84, 0.64),  # far better than everything: beats best static
    "famo": (10.2, 0.80, 0.59),
    "mean": (10.3, 0.80, 0.60),  # a fixed equal weighting: a row, not an adaptive method
    "dwa": (10.1, 0.79, 0.60),
    "static:1.5,0.75,0.75": (9.8, 0.79, 0.59),  # best on validation among interior points
    "static:0.75,1.5,0.75": (9.0, 0.83, 0.62),  # best on test, worse on validation
    "static:0.75,0.75,1.5": (10.5, 0.78, 0.61),
    "static:2,1,0": (9.0, 0.80, 0.30),  # boundary point: best validation, never "best static"
    "stl:age": (9.5, math.nan, math.nan),
    "stl:gender": (math.nan, 0.82, math.nan),
    "stl:race": (math.nan, math.nan, 0.62),
}
VAL = {  # best_val/score at the good lr, before the seed term
    "static:1.5,0.75,0.75": 0.40,
    "static:0.75,1.5,0.75": 0.45,
    "static:0.75,0.75,1.5": 0.50,
    "static:2,1,0": 0.30,
}
NOISE = {0: (-0.4, -0.01, 0.02), 1: (0.1, 0.0, -0.01), 2: (0.5, 0.015, 0.0)}
EXTRA = {  # per-method seed noise, so paired differences vary
    "uncertainty": {0: (0.05, 0.0, 0.0), 1: (-0.05, 0.001, 0.0), 2: (0.0, 0.0, 0.001)},
    "famo": {0: (0.3, 0.0, 0.0), 1: (-0.2, 0.01, 0.0), 2: (0.0, -0.005, 0.01)},
    "dwa": {0: (0.1, 0.005, 0.0), 1: (0.2, -0.01, 0.0), 2: (-0.3, 0.0, 0.01)},
    "stl:age": {0: (0.3, 0, 0), 1: (-0.1, 0, 0), 2: (0.2, 0, 0)},
    "stl:race": {0: (0, 0, 0.01), 1: (0, 0, -0.02), 2: (0, 0, 0.0)},
}
THROUGHPUT = {"uncertainty": 80.0, "famo": 50.0}  # images/s; every other strategy 100
WEIGHT_MOVE = {"uncertainty": 0.05, "famo": 0.4}


def metrics_of(strategy: str, lr: float, seed: int) -> tuple[float, float, float]:
    base = QUALITY[strategy]
    noise = np.add(NOISE[seed], EXTRA.get(strategy, {}).get(seed, (0, 0, 0)))
    worse = np.array([2.0, -0.05, -0.05]) if lr != GOOD else np.zeros(3)
    age, gender, race = np.array(base) + noise + worse
    return float(age), float(gender), float(race)


def status_of(strategy: str, lr: float, seed: int) -> str:
    # famo: a seed diverged at the lr whose survivors validate best -> it loses that lr.
    # dwa: one seed diverged at each lr -> equal failures, the validation score decides.
    if (strategy, lr, seed) == ("famo", GOOD, 2) or (strategy == "dwa" and seed == 1):
        return "diverged"
    return "finished"


def val_score(strategy: str, lr: float, seed: int) -> float:
    base = VAL.get(strategy, 0.5)
    if strategy == "famo":  # survivors at the good lr validate best of all its trials
        return 0.3 + 0.01 * seed if lr == GOOD else 0.5 + 0.01 * seed
    return base + 0.01 * seed + (0.2 if lr != GOOD else 0.0)


def _trial(tracker, parent, strategy, lr, seed, *, offset=0.0) -> None:
    tasks = strategy.split(":")[1] if strategy.startswith("stl:") else ALL
    if strategy == "static:2,1,0":
        tasks = "age,gender"
    status = status_of(strategy, lr, seed)
    run = tracker.start_run(
        f"{strategy} lr={lr:g} seed={seed}",
        params={"strategy": strategy, "lr": f"{lr:g}", "seed": str(seed), "tasks": tasks, **GROUP},
        tags={KIND_TAG: "trial", STATUS_TAG: status},
        parent=parent,
    )
    age, gender, race = metrics_of(strategy, lr, seed)
    age += offset
    for epoch in range(2):
        run.log_metrics(
            {
                "val/score": 1.0 - 0.3 * epoch,
                "time/epoch_s": 2.0 * 100.0 / THROUGHPUT.get(strategy, 100.0),
                "throughput/train_img_s": THROUGHPUT.get(strategy, 100.0),
                **(
                    {"strategy/weight_move": WEIGHT_MOVE[strategy] * (epoch + 1) / 2}
                    if strategy in WEIGHT_MOVE
                    else {}
                ),
            },
            step=epoch,
        )
    if status == "finished":
        final = {"best_val/score": val_score(strategy, lr, seed), "test/score": 0.5}
        for key, value in (("age_mae", age), ("gender_acc", gender), ("race_acc", race)):
            if math.isfinite(value):
                final |= {f"test/{key}": value, f"best_val/{key}": value}
        run.log_metrics(final, step=1)
    run.end("FINISHED")


def make_study(folder: Path) -> str:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracker = Tracker(uri, EXPERIMENT)
    parent = tracker.start_run("grid", tags={KIND_TAG: "study"})
    # An older repeat of stl:age seed 0 with a wild MAE: it must count neither in the baseline
    # nor anywhere else.
    _trial(tracker, parent, "stl:age", GOOD, 0, offset=100.0)
    for strategy in QUALITY:
        for lr in (GOOD, OTHER):
            for seed in SEEDS:
                _trial(tracker, parent, strategy, lr, seed)
    parent.end("FINISHED")
    return uri


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("verdicts")
    uri = make_study(base)
    result = CliRunner().invoke(
        app, ["report", EXPERIMENT, "--tracking-uri", uri, "--output", str(base / "report")]
    )
    assert result.exit_code == 0, result.output
    return base / "report"


@pytest.fixture(scope="module")
def board(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "leaderboard.csv").set_index("strategy")


@pytest.fixture(scope="module")
def tests(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "tests.csv")


def _baselines_by_seed() -> dict[str, dict[int, float]]:
    return {
        "age": {s: metrics_of("stl:age", GOOD, s)[0] for s in SEEDS},
        "gender": {s: metrics_of("stl:gender", GOOD, s)[1] for s in SEEDS},
        "race": {s: metrics_of("stl:race", GOOD, s)[2] for s in SEEDS},
    }


def _dm(m: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    return 100 / 3 * ((m[0] - b[0]) / b[0] - (m[1] - b[1]) / b[1] - (m[2] - b[2]) / b[2])


def _dm_mean_baselines(strategy: str, lr: float, seeds=SEEDS) -> dict[int, float]:
    """delta-m per seed against the mean baselines (what each trial logs as test/delta_m)."""
    base = _baselines_by_seed()
    b = tuple(float(np.mean(list(base[t].values()))) for t in ("age", "gender", "race"))
    return {s: _dm(metrics_of(strategy, lr, s), b) for s in seeds}  # type: ignore[arg-type]


def _holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjustment written out for up to three p-values."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    adjusted, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adjusted[i] = running
    return adjusted


def test_best_static_is_chosen_on_validation_among_interior_points(board):
    row = board.loc["best static (1.5,0.75,0.75)"]
    assert row["kind"] == "method" and row["static_spec"] == "static:1.5,0.75,0.75"
    src = board.loc["static:1.5,0.75,0.75"]
    assert row["test/age_mae"] == pytest.approx(src["test/age_mae"])
    assert row["best_lr"] == pytest.approx(GOOD)
    assert not any(s.startswith("best static (2,1,0") for s in board.index)
    assert not any(s.startswith("best static (0.75,1.5") for s in board.index)  # test-best


def test_failed_seed_rule_chooses_lr_and_is_shown_as_k_of_n(board, out):
    famo, dwa = board.loc["famo"], board.loc["dwa"]
    assert famo["best_lr"] == pytest.approx(OTHER)  # survivors at 1e-3 validate better
    assert famo["failed_at_lr"] == "0/3" and famo["n_seeds"] == 3
    assert dwa["best_lr"] == pytest.approx(GOOD) and dwa["failed_at_lr"] == "1/3"
    md = (out / "leaderboard.md").read_text()
    assert re.search(r"\| famo \| 0\.0003 \|.*\| 0/3 \|", md), md
    assert "dwa (1/3)" in md


def test_repeated_baseline_seed_counts_once(board):
    dm = _dm_mean_baselines("sum", GOOD)
    assert board.loc["sum", "test/delta_m"] == pytest.approx(np.mean(list(dm.values())))
    assert board.loc["stl:age", "n_seeds"] == 3


def test_families_and_holm_by_hand(tests, board):
    adaptive = {"uncertainty": GOOD, "famo": OTHER, "dwa": GOOD}
    seeds = {"uncertainty": SEEDS, "famo": SEEDS, "dwa": (0, 2)}
    refs = {
        "adaptive vs sum": ("sum", GOOD, "sum"),
        "adaptive vs best static": (
            "static:1.5,0.75,0.75",
            GOOD,
            "best static (1.5,0.75,0.75)",
        ),
    }
    for family, (ref, ref_lr, ref_name) in refs.items():
        raw, diffs = [], []
        for method, lr in adaptive.items():
            a, b = _dm_mean_baselines(method, lr, seeds[method]), _dm_mean_baselines(ref, ref_lr)
            keys = sorted(a)
            raw.append(stats.ttest_rel([a[k] for k in keys], [b[k] for k in keys]).pvalue)
            diffs.append(np.mean([a[k] - b[k] for k in keys]))
        mine = tests[tests["family"] == family].set_index("method")
        assert set(mine.index) == set(adaptive) and set(mine["reference"]) == {ref_name}
        for method, want_p, want_d in zip(adaptive, _holm(raw), diffs, strict=True):
            assert mine.loc[method, "p_holm"] == pytest.approx(want_p, rel=1e-9)
            assert mine.loc[method, "mean_diff"] == pytest.approx(want_d, rel=1e-9)
    # The leaderboard's Holm-adjusted p against sum is the same family's value.
    f1 = tests[tests["family"] == "adaptive vs sum"].set_index("method")
    for method in adaptive:
        assert board.loc[method, "p_vs_ref_holm"] == pytest.approx(f1.loc[method, "p_holm"])
        assert board.loc[method, "family"] == "adaptive vs sum"
    assert board.loc["mean", "family"] == "fixed weightings vs sum"
    assert board.loc["static:2,1,0", "family"] == "boundary static points vs sum"
    sweep = tests[tests["family"] == "static sweep vs sum"]
    assert set(sweep["method"]) == {
        "static:1.5,0.75,0.75",
        "static:0.75,1.5,0.75",
        "static:0.75,0.75,1.5",
    }  # interior points only, apart from the methods


def test_beats_sentences_follow_the_tests(out, tests):
    md = (out / "leaderboard.md").read_text()
    static = tests[tests["family"] == "adaptive vs best static"].set_index("method")
    assert static.loc["uncertainty", "p_holm"] < 0.05 and static.loc["uncertainty", "mean_diff"] < 0
    assert "Beyond noise, 1 of 3 methods beat best static (1.5,0.75,0.75): uncertainty" in md
    assert "(family “adaptive vs best static”)" in md
    assert "3 adaptive methods compared with sum (family “adaptive vs sum”)" in md


def test_delta_m_interval_includes_baseline_seed_variance(board, out):
    base = _baselines_by_seed()
    for strategy, lr in (("sum", GOOD), ("uncertainty", GOOD), ("famo", OTHER)):
        values = [
            _dm(metrics_of(strategy, lr, s), tuple(base[t][s] for t in ("age", "gender", "race")))  # type: ignore[arg-type]
            for s in SEEDS
        ]
        low, high = stats.t.interval(
            0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values)
        )
        row = board.loc[strategy]
        assert row["delta_m_noise"] == pytest.approx((low + high) / 2)
        assert row["delta_m_noise_ci"] == pytest.approx((high - low) / 2)
        assert row["delta_m_noise_method"] == "seed-paired"
    assert "computed seed-paired" in (out / "leaderboard.md").read_text()


def test_power_sentence_from_the_paired_spread(out):
    sds = []
    for method, lr, seeds in (
        ("uncertainty", GOOD, SEEDS),
        ("famo", OTHER, SEEDS),
        ("dwa", GOOD, (0, 2)),
    ):
        a, b = _dm_mean_baselines(method, lr, seeds), _dm_mean_baselines("sum", GOOD)
        sds.append(float(np.std([a[k] - b[k] for k in a], ddof=1)))
    sd = sorted(sds)[1]
    n = 3  # the median number of pairs
    detect = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / math.sqrt(n)
    need = next(
        k
        for k in range(2, 10_000)
        if (stats.t.ppf(0.975, k - 1) + stats.t.ppf(0.8, k - 1)) * sd / math.sqrt(k) <= 2.0
    )
    md = (out / "leaderboard.md").read_text()
    assert f"(SD {sd:.2f} points over 3 comparisons)" in md
    assert f"differences of about {detect:.1f} points or more" in md
    assert f"detecting 2 points would take {need} seeds" in md


def test_weights_cost_and_edges(board, out):
    md = (out / "leaderboard.md").read_text()
    assert "uncertainty (5%)" in md and "famo (40%)" not in md
    assert board.loc["uncertainty", "step_cost"] == pytest.approx(100 / 80)
    assert board.loc["famo", "step_cost"] == pytest.approx(2.0)
    assert board.loc["sum", "step_cost"] == pytest.approx(1.0)
    assert "famo 2.00x, uncertainty 1.25x" in md
    assert re.search(r"\| famo \| 0\.0003 \(low edge\) \|", md)
    assert re.search(r"\| sum \| 0\.001 \(high edge\) \|", md)


def test_time_figure_is_in_the_report(out):
    assert (out / "time.png").stat().st_size > 5_000
    page = (out / "report.html").read_text()
    assert "Validation score against wall-clock time" in page
    assert "Verdicts: against sum and the best static weighting" in page
    assert "best static (1.5,0.75,0.75)" in page


def test_summary_md_repeats_the_reports_own_sentences(out: Path):
    summary = (out / "summary.md").read_text(encoding="utf-8")
    full = (out / "leaderboard.md").read_text(encoding="utf-8")
    bullets = [line for line in summary.splitlines() if line.startswith("- ")]
    assert len(bullets) >= 8
    assert all(line in full for line in bullets)  # nothing hand-written, nothing new
    assert "| 1 |" in summary
    assert "best static (" in summary and "| sum |" in summary
    assert "](./leaderboard.md)" in summary and "](./delta_m.png)" in summary


def test_report_readme_pastes_the_summary(tmp_path: Path, out: Path):
    uri = f"sqlite:///{out.parent / 'mlflow.db'}"
    begin, end = readme.markers(EXPERIMENT)
    page = tmp_path / "README.md"
    page.write_text(f"# doc\n\n{begin}\nstale\n{end}\n\nrest\n", encoding="utf-8")
    folder = tmp_path / "results" / EXPERIMENT
    args = ["report", EXPERIMENT, "--tracking-uri", uri, "--output", str(folder)]
    result = CliRunner().invoke(app, [*args, "--readme", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    body = readme.relink(
        (folder / "summary.md").read_text(encoding="utf-8"), f"results/{EXPERIMENT}"
    )
    assert text == f"# doc\n\n{begin}\n{body.rstrip()}\n{end}\n\nrest\n"
    assert "stale" not in text and f"](results/{EXPERIMENT}/delta_m.png)" in text
    # a README without the markers is refused before any work, and left as it was
    bare = tmp_path / "BARE.md"
    bare.write_text("# nothing here\n", encoding="utf-8")
    result = CliRunner().invoke(app, [*args, "--readme", str(bare)])
    assert result.exit_code == 2 and f"results:{EXPERIMENT}:begin" in result.output
    assert bare.read_text(encoding="utf-8") == "# nothing here\n"
