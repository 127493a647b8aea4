"""Verdicts wiring without MLflow: which delta-m interval method the report uses."""

from __future__ import annotations

import pandas as pd
import pytest

from mtlbench.report import tables as report
from mtlbench.report import verdicts
from mtlbench.report.verdict_stats import delta_m_interval
from tests.unit.report.test_tables import _trial

SUM = {0: (10.0, 0.80, 0.60), 1: (10.5, 0.78, 0.61), 2: (9.8, 0.81, 0.58)}
STL = {5: (9.5, 0.82, 0.62), 6: (9.9, 0.83, 0.60), 7: (9.2, 0.81, 0.65)}


def _metrics(age: float, gender: float, race: float) -> dict[str, float]:
    return {"test/age_mae": age, "test/gender_acc": gender, "test/race_acc": race}


def _frame(stl_seeds: tuple[int, ...]) -> pd.DataFrame:
    rows = [
        _trial("sum", 1e-3, s, **{"best_val/score": 0.5, **_metrics(*m)}) for s, m in SUM.items()
    ]
    for i, (task, metric) in enumerate(
        (("age", "age_mae"), ("gender", "gender_acc"), ("race", "race_acc"))
    ):
        for s in stl_seeds:
            value = STL[s][i] if s in STL else SUM[s][i] - 0.01
            rows.append(
                _trial(
                    f"stl:{task}",
                    1e-3,
                    s,
                    tasks=task,
                    **{"best_val/score": 0.5, f"best_val/{metric}": value, f"test/{metric}": value},
                )
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("stl_seeds", "method"), [((5, 6, 7), "delta method"), ((0, 1, 2), "seed-paired")]
)
def test_interval_method_follows_the_baselines_seeds(stl_seeds, method) -> None:
    tidy = _frame(stl_seeds)
    baselines = report.single_task_baselines(tidy)
    v = verdicts.build(tidy, report.summarize(tidy), "test/delta_m", tidy, baselines)
    got = v.intervals["sum"]
    assert got.method == method
    # the same numbers the function gives on inputs assembled by hand from the frame above
    stl = {s: STL.get(s, tuple(x - 0.01 for x in SUM.get(s, (0, 0, 0)))) for s in stl_seeds}
    base = {t: {s: stl[s][i] for s in stl_seeds} for i, t in enumerate(("age", "gender", "race"))}
    by_seed = {s: dict(zip(("age", "gender", "race"), m, strict=True)) for s, m in SUM.items()}
    want = delta_m_interval(by_seed, base, {"age": False, "gender": True, "race": True})
    assert (got.mean, got.half, got.df) == pytest.approx((want.mean, want.half, want.df))
    words = "by the delta method" if method == "delta method" else "computed seed-paired"
    assert any(words in s for s in v.sentences())


def test_step_costs_say_when_trials_ran_on_several_machines():
    tidy = pd.DataFrame(
        {
            "status": ["finished", "finished", "finished", "diverged"],
            "host": ["AMD EPYC (2 CPUs)", "AMD EPYC (2 CPUs)", "Intel Xeon (2 CPUs)", "Other"],
        }
    )
    hosts = verdicts.machines(tidy)
    assert hosts == ("AMD EPYC (2 CPUs)", "Intel Xeon (2 CPUs)")  # finished trials only
    cost = {"sum": 1.0, "pcgrad": 2.4, "famo": 1.3}
    one = verdicts.cost_sentence(cost, False, hosts[:1])
    assert "machines" not in one and "pcgrad 2.40x, famo 1.30x" in one
    two = verdicts.cost_sentence(cost, False, hosts)
    assert two.startswith(one) and "ran on 2 machines (AMD EPYC (2 CPUs); Intel Xeon" in two
    assert verdicts.machines(tidy.drop(columns="host")) == ()  # runs older than the tag
