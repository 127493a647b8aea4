"""Validation score against wall-clock time: cumulative epoch seconds, means over seeds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mtlbench.report import plots_cost
from tests.unit.report.test_tables import _trial


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    tidy = pd.DataFrame(
        [
            _trial("sum", 1e-3, 0, **{"best_val/score": 0.5}),
            _trial("sum", 1e-3, 1, **{"best_val/score": 0.5}),
            _trial("static:2,0.5,0.5", 1e-3, 0, **{"best_val/score": 0.4}),
        ]
    )
    rows = []
    times = {
        "sum-0.001-0": (2.0, 3.0),
        "sum-0.001-1": (4.0, 5.0),
        "static:2,0.5,0.5-0.001-0": (1, 1),
    }
    scores = {
        "sum-0.001-0": (0.9, 0.7),
        "sum-0.001-1": (0.8, 0.5),
        "static:2,0.5,0.5-0.001-0": (1, 1),
    }
    for run_id in times:
        for step in (0, 1):
            rows.append((run_id, "time/epoch_s", step, times[run_id][step]))
            rows.append((run_id, "val/score", step, scores[run_id][step]))
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"]), tidy


def test_cumulative_seconds_and_scores_are_averaged_over_seeds() -> None:
    histories, tidy = _frames()
    data = plots_cost.score_over_time(histories, tidy).set_index(["strategy", "step"])
    assert set(data.index.get_level_values(0)) == {"sum"}  # sweep points only when asked
    # seed 0: 2, 5 s; seed 1: 4, 9 s -> means 3 and 7; scores (0.9+0.8)/2, (0.7+0.5)/2
    assert data.loc[("sum", 0), "seconds"] == pytest.approx(3.0)
    assert data.loc[("sum", 1), "seconds"] == pytest.approx(7.0)
    assert data.loc[("sum", 1), "score"] == pytest.approx(0.6)
    assert data.loc[("sum", 1), "n"] == 2
    both = plots_cost.score_over_time(histories, tidy, ("static:2,0.5,0.5",))
    assert set(both["strategy"]) == {"sum", "static:2,0.5,0.5"}


def test_figure_is_written_and_skipped_without_timings(tmp_path: Path) -> None:
    histories, tidy = _frames()
    summary = pd.DataFrame({"strategy": ["sum", "static:2,0.5,0.5"]})
    path = plots_cost.time_figure(
        histories, tidy, summary, {"sum": (0.1, 0.2, 0.7)}, tmp_path / "t.png", "static:2,0.5,0.5"
    )
    assert path is not None and path.stat().st_size > 5_000
    untimed = histories[histories["key"] != "time/epoch_s"]
    assert plots_cost.time_figure(untimed, tidy, summary, {}, tmp_path / "u.png") is None
