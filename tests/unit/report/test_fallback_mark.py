"""Issue 10 item 3: a trial that was often not its own method is tagged and marked."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mtlbench.report import tables as report
from mtlbench.report import text
from mtlbench.tracking import FALLBACK_LIMIT, SOLVER_FALLBACK_TAG
from mtlbench.training.fit import NullRun, _tag_fallbacks, fallback_fraction
from tests.unit.report.test_tables import _trial


class _Recorder(NullRun):
    def __init__(self) -> None:
        self.tags: dict[str, object] = {}

    def set_tags(self, tags):  # type: ignore[no-untyped-def]
        self.tags.update(tags)


def test_fraction_by_hand_and_tag_only_above_the_limit() -> None:
    assert fallback_fraction({"steps": 400.0, "fallback_steps": 6.0}) == pytest.approx(0.015)
    assert fallback_fraction({"solver_failures": 2.0}) is None  # no step count: no fraction
    assert fallback_fraction({"steps": 0.0, "fallback_steps": 0.0}) is None
    above, at = _Recorder(), _Recorder()
    _tag_fallbacks({"steps": 400.0, "fallback_steps": 6.0}, above)
    _tag_fallbacks({"steps": 400.0, "fallback_steps": 400 * FALLBACK_LIMIT}, at)
    assert above.tags == {SOLVER_FALLBACK_TAG: "0.0150"}
    assert at.tags == {}  # exactly 1% is not "more than 1%"


def test_leaderboard_marks_the_row_and_the_caveat_names_it() -> None:
    rows = []
    for strategy in ("sum", "nash_mtl"):
        for seed in (0, 1):
            row = _trial(
                strategy, 1e-3, seed, **{"best_val/score": 0.5, "test/score": 0.5 + seed / 10}
            )
            row["solver_fallback"] = 0.25 if (strategy, seed) == ("nash_mtl", 1) else math.nan
            rows.append(row)
    summary = report.summarize(pd.DataFrame(rows))
    flagged = summary.set_index("strategy")
    assert flagged.loc["nash_mtl", "n_fallback"] == 1
    assert flagged.loc["nash_mtl", "max_fallback"] == pytest.approx(0.25)
    assert flagged.loc["sum", "n_fallback"] == 0
    _, cells = text.method_table(summary, "test/score")
    names = {c[1] for c in cells}
    assert names == {"sum", "nash_mtl" + text.FALLBACK_MARK}
    note = text.fallback_caveat(summary)
    assert note is not None and "nash_mtl (1 of 2 seeds, up to 25.0% of steps)" in note


def test_tidy_reads_the_tag_from_mlflow_rows() -> None:
    raw = pd.DataFrame(
        [
            {"run_id": "a", "param.strategy": "cagrad", f"tag.{SOLVER_FALLBACK_TAG}": "0.0300"},
            {"run_id": "b", "param.strategy": "sum"},
        ]
    )
    tidy = report.tidy_trials(raw).set_index("run_id")
    assert tidy.loc["a", "solver_fallback"] == pytest.approx(0.03)
    assert math.isnan(tidy.loc["b", "solver_fallback"])
