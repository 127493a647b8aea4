"""Optuna search space, objectives and the per-worker budget rules (no training here)."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest

from mtlbench.config import ConfigError, RunConfig, SearchConfig
from mtlbench.report.tables import delta_m
from mtlbench.runs.optuna.context import ATTR_N_TRIALS, beyond_budget, worker_seed
from mtlbench.runs.optuna.space import (
    Objective,
    check_strategies,
    choose_objective,
    suggest,
    validation_baselines,
    with_params,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)
VAL = {"score": 0.8, "age_mae": 9.0, "gender_acc": 0.75, "race_acc": 0.5}


def _cfg(**search: object) -> RunConfig:
    return RunConfig(search=SearchConfig(search="optuna", **search))  # type: ignore[arg-type]


def test_objective_values_and_directions():
    assert Objective("val_score").values(VAL) == [0.8]
    assert Objective("val_score").directions == ["minimize"]
    base = {"age": 10.0, "gender": 0.8, "race": 0.4}
    dm = Objective("val_delta_m", base).values(VAL)[0]
    assert dm == pytest.approx(delta_m({"age": 9.0, "gender": 0.75, "race": 0.5}, base))
    pareto = Objective("pareto")
    assert pareto.values(VAL) == [9.0, 0.75, 0.5]
    assert pareto.directions == ["minimize", "maximize", "maximize"]
    assert not pareto.prunable and Objective("val_score").prunable
    again = Objective.from_attrs(Objective("val_delta_m", base).to_attrs())
    assert again == Objective("val_delta_m", base)


def test_choose_objective_prefers_delta_m_once_baselines_exist():
    base = {"age": 10.0, "gender": 0.8, "race": 0.4}
    assert choose_objective("auto", None).kind == "val_score"
    assert choose_objective("auto", base).kind == "val_delta_m"
    assert choose_objective("score", base).kind == "val_score"
    assert choose_objective("pareto", base).kind == "pareto"
    with pytest.raises(ConfigError, match="baselines"):
        choose_objective("delta_m", None)


def _tidy(rows: list[dict[str, object]]) -> pd.DataFrame:
    group = {"data_sha256": "d", "split_sha256": "s", "image_size": "32", "backbone": "tiny"}
    return pd.DataFrame([{**group, "epochs": "2", "status": "finished", **r} for r in rows])


def test_validation_baselines_pick_each_tasks_best_lr_on_validation():
    tidy = _tidy(
        [
            {"tasks": "age", "lr": 1e-3, "best_val/age_mae": 8.0},
            {"tasks": "age", "lr": 1e-2, "best_val/age_mae": 12.0},
            {"tasks": "gender", "lr": 1e-3, "best_val/gender_acc": 0.7},
            {"tasks": "gender", "lr": 1e-3, "best_val/gender_acc": 0.9},
            {"tasks": "race", "lr": 1e-3, "best_val/race_acc": 0.4},
            {"tasks": "race", "lr": 1e-3, "best_val/race_acc": 0.9, "status": "diverged"},
            {"tasks": "age,gender,race", "lr": 1e-3, "best_val/age_mae": 1.0},
        ]
    )
    group = {"data_sha256": "d", "split_sha256": "s", "image_size": "32", "backbone": "tiny"}
    got = validation_baselines(tidy, {**group, "epochs": "2"})
    assert got == {"age": 8.0, "gender": pytest.approx(0.8), "race": 0.4}
    # Another number of epochs is another group: no baselines there.
    assert validation_baselines(tidy, {**group, "epochs": "3"}) is None
    # A task without any single-task trial: no delta-m.
    assert validation_baselines(tidy[tidy["tasks"] != "race"], {**group, "epochs": "2"}) is None


def test_suggest_samples_each_strategys_own_hyperparameters_only():
    cfg = _cfg(strategies=("sum", "dwa", "uncertainty"), seeds=(0, 1), lr_range=(1e-4, 1e-2))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        spec, items = suggest(trial, cfg)
        seen.add(spec.strategy)
        assert 1e-4 <= spec.lr <= 1e-2 and spec.seed in (0, 1)
        names = {k for k in trial.params if "." in k}
        if spec.strategy == "dwa":
            assert names == {"dwa.temperature"}
            assert items == (f"dwa.temperature={trial.params['dwa.temperature']!r}",)
        elif spec.strategy == "uncertainty":
            # regression_form is not searchable; weight_lr is (issue 11)
            assert names == {"uncertainty.init_log_var", "uncertainty.weight_lr"}
        else:
            assert names == set() and items == ()
        study.tell(trial, 0.0)
    assert seen == {"sum", "dwa", "uncertainty"}


def test_a_fixed_strategy_param_is_not_searched_and_reaches_the_trial():
    cfg = _cfg(strategies=("dwa",), strategy_params=("dwa.temperature=3",))
    trial = optuna.create_study().ask()
    _, items = suggest(trial, cfg)
    assert "dwa.temperature" not in trial.params and items == ()
    sampled = with_params(_cfg(strategies=("dwa",)), ("dwa.temperature=0.5",))
    assert sampled.search.strategy_params == ("dwa.temperature=0.5",)


def test_sampled_floats_keep_full_precision():
    cfg = _cfg(strategies=("dwa",))
    study = optuna.create_study()
    study.enqueue_trial({"dwa.temperature": 1.2345678901234})
    _, items = suggest(study.ask(), cfg)
    assert items == ("dwa.temperature=1.2345678901234",)


def test_grid_only_features_are_refused():
    with pytest.raises(ConfigError, match="single-task baselines come from a grid"):
        check_strategies(_cfg(strategies=("sum", "stl")))
    with pytest.raises(ConfigError, match="grid feature"):
        check_strategies(_cfg(scalarization_sweep=2))


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("lr_range", (1e-2, 1e-4), "lr_range"),
        ("lr_range", (0.0, 1e-2), "lr_range"),
        ("lr_range", "fast", "lr_range"),
        ("objective", "best", "unknown objective 'best'; valid choices: auto, score"),
        ("pruner", "hyperband", "unknown pruner 'hyperband'; valid choices: median, none"),
        ("workers", 0, "workers must be an integer >= 1"),
        ("devices", ("cuda:0",), "devices takes CUDA indices"),
        ("heartbeat_s", 0, "heartbeat_s must be an integer >= 1"),
    ],
)
def test_search_config_validates_optuna_fields(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        SearchConfig(**{field: value})


def test_worker_seeds_differ_between_workers_and_between_resumes():
    assert worker_seed(7, 0, 0) == 7  # a fresh one-worker study is reproducible
    seeds = {worker_seed(7, i, n) for i in range(4) for n in (0, 5, 9)}
    assert len(seeds) == 12
    assert 0 <= worker_seed(7, None, 0) < 2**31


def test_beyond_budget_lets_only_the_lowest_racing_trial_through():
    study = optuna.create_study()
    study.set_user_attr(ATTR_N_TRIALS, 3)
    done = study.ask()
    study.tell(done, 1.0)  # 0: complete
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)  # 1: failed, frees its slot
    pruned = study.ask()
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)  # 2: counts as finished
    a, b = study.ask(), study.ask()  # 3 and 4 race for the last slot
    assert not beyond_budget(study, a.number)
    assert beyond_budget(study, b.number)
    study.tell(a, state=optuna.trial.TrialState.FAIL)  # the winner crashed: slot free again
    assert not beyond_budget(study, b.number)
    assert math.isfinite(study.best_value)


def test_pruner_follows_config_and_objective():
    from mtlbench.runs.optuna.context import StudyContext, make_pruner

    def pruner(objective: str, **search: object):
        return make_pruner(StudyContext("s", _cfg(**search), Objective(objective), "run", {}))

    median = pruner("val_score", prune_startup_trials=2, prune_warmup_epochs=3)
    assert isinstance(median, optuna.pruners.MedianPruner)
    assert isinstance(pruner("val_score", pruner="none"), optuna.pruners.NopPruner)
    assert isinstance(pruner("pareto"), optuna.pruners.NopPruner)  # single-objective only


def test_cli_flags_reach_the_search_config():
    from mtlbench.cli.app import build_config

    cfg = build_config(
        search="optuna", objective="pareto", no_prune=True, lr_range="1e-5,1e-1", workers=3,
        devices="0,1",
    )  # fmt: skip
    s = cfg.search
    assert (s.objective, s.pruner, s.lr_range) == ("pareto", "none", (1e-5, 1e-1))
    assert (s.workers, s.devices) == (3, ("0", "1"))
    assert build_config().search.pruner == "median"


def test_worker_commands_split_threads_and_devices():
    from mtlbench.runs.optuna.local import worker_commands

    cpu = worker_commands("s", 2, (), threads_total=8)
    assert [c[c.index("--threads") + 1] for c in cpu] == ["4", "4"]
    assert all("--device" not in c for c in cpu)
    gpu = worker_commands("s", 3, ("0", "1"), threads_total=16)
    assert [c[c.index("--device") + 1] for c in gpu] == ["cuda:0", "cuda:1", "cuda:0"]
    assert [c[c.index("--worker-index") + 1] for c in gpu] == ["0", "1", "2"]
    assert all("--storage" not in c for c in gpu)  # the URL travels in the environment
