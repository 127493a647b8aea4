"""A grid study's identity: its fingerprint follows the data's content, not their path, and
--resume tells learning rates apart exactly."""

from __future__ import annotations

import dataclasses

from mtlbench.config import RunConfig, override
from mtlbench.runs.grid import plan_trials, study_signature, trial_key
from mtlbench.runs.study import study_definition
from mtlbench.tracking import ChildRun, Status, TrackedRun
from mtlbench.training.fit import TrialSpec

DATA = {"data_sha256": "a" * 64, "split_sha256": "b" * 64}


def test_moving_the_data_folder_keeps_the_grid_signature() -> None:
    here = override(RunConfig(), "data", source="/data/UTKFace")
    there = override(RunConfig(), "data", source="/elsewhere/UTKFace.tar.gz", cache_dir="/c")
    assert study_signature(here, DATA) == study_signature(there, DATA)
    other = {**DATA, "data_sha256": "c" * 64}
    assert study_signature(here, DATA) != study_signature(here, other)
    assert study_signature(here, DATA) != study_signature(
        override(here, "search", lrs=(3e-4,)), DATA
    )


def test_grid_and_optuna_definitions_differ_only_in_search_keys() -> None:
    grid = study_definition(RunConfig(), DATA)
    optuna = study_definition(override(RunConfig(), "search", search="optuna"), DATA)
    assert {k: v for k, v in grid.items() if k != "search"} == {
        k: v for k, v in optuna.items() if k != "search"
    }
    assert "lrs" in grid["search"] and "lr_range" in optuna["search"]


def test_resume_matches_learning_rates_exactly() -> None:
    # Both print as "0.001" with %g, yet they are different trials.
    assert f"{1e-3:g}" == f"{1.0000001e-3:g}"
    assert trial_key("sum", 1e-3, 0) != trial_key("sum", 1.0000001e-3, 0)
    assert trial_key("sum", "0.001", "0") == trial_key("sum", 1e-3, 0)
    run = TrackedRun(client=None, run_id="r1")  # type: ignore[arg-type]
    done = ChildRun(run, "sum", repr(1e-3), "0", Status.FINISHED)
    specs = [TrialSpec("sum", 1e-3, 0), TrialSpec("sum", 1.0000001e-3, 0)]
    plan = plan_trials(specs, {trial_key(done.strategy, done.lr, done.seed): done})
    assert [p.spec for p in plan] == [specs[1]] and plan[0].run_id is None
    stopped = dataclasses.replace(done, status=Status.INTERRUPTED)
    plan = plan_trials(specs[:1], {trial_key("sum", 1e-3, 0): stopped})
    assert plan[0].run_id == "r1"
