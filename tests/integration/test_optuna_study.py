"""`mtlbench run --search optuna` on tiny generated faces, read back through
``optuna.load_study`` and MLflow's client: one process, SQLite storage."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner

from mtlbench.cli.app import app

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def optuna_args(work: Path, faces: Path, cache: Path, *extra: str, experiment: str = "opt"):
    return [
        "run", "--search", "optuna", "--backbone", "tiny", "--epochs", "2",
        "--batch-size", "32", "--data", str(faces), "--cache-dir", str(cache),
        "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", "--experiment", experiment,
        "--output", str(work / "out"), *extra,
    ]  # fmt: skip


def load(work: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{work / 'optuna.db'}")


def mlflow_runs(work: Path, experiment: str, study: str):
    client = MlflowClient(tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`mtlbench.study_name` = '{study}'")
    parents = [r for r in runs if r.data.tags.get("mtlbench.kind") == "study"]
    children = [r for r in runs if r.data.tags.get("mtlbench.kind") == "trial"]
    return client, parents, children


def finished_param_sets(study: optuna.Study) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in study.get_trials(states=FINISHED)]


@pytest.fixture(scope="module")
def study_run(faces_dir, session_cache, tmp_path_factory):
    work = tmp_path_factory.mktemp("optuna")
    args = optuna_args(
        work, faces_dir, session_cache, "--strategies", "sum,dwa", "--n-trials", "3",
        "--study-name", "s1", "--lr-range", "1e-3,1e-2",
    )  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return work, args, result.output


def test_study_holds_n_trials_over_the_declared_space(study_run):
    work, _, output = study_run
    study = load(work, "s1")
    trials = study.get_trials(states=FINISHED)
    assert len(study.trials) == len(trials) == 3
    assert study.user_attrs["mtlbench.objective"]["kind"] == "val_score"
    for t in trials:
        assert t.params["strategy"] in ("sum", "dwa")
        assert 1e-3 <= t.params["lr"] <= 1e-2 and t.params["seed"] == 0
        assert ("dwa.temperature" in t.params) == (t.params["strategy"] == "dwa")
        assert sorted(t.intermediate_values) == [0, 1]  # the objective, reported per epoch
    flat = " ".join(output.split())  # rich wraps long lines
    assert "best trial #" in flat and "mtlbench worker --study-name s1 --storage" in flat


def test_one_parent_and_one_tagged_child_per_trial(study_run):
    work, _, _ = study_run
    client, parents, children = mlflow_runs(work, "opt", "s1")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.params["objective"] == "val_score"
    assert parent.data.params["lr_range"] == "0.001,0.01"
    by_number = {int(c.data.tags["mtlbench.trial_number"]): c for c in children}
    assert sorted(by_number) == [0, 1, 2]
    for t in load(work, "s1").trials:
        child = by_number[t.number]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert t.user_attrs["mtlbench.mlflow_run_id"] == child.info.run_id
        assert child.data.params["strategy"] == t.params["strategy"]
        assert child.data.params["lr"] == f"{t.params['lr']:g}"
        assert child.data.tags["mtlbench.status"] == "finished"
        assert float(child.data.params["best.val_score"]) == pytest.approx(t.value)
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"optuna_history.png", "optuna_importances.png", "optuna_trials.csv"} <= names
    assert (work / "out" / "optuna_history.png").stat().st_size > 10_000


def test_rerunning_a_complete_study_trains_nothing(study_run):
    work, args, _ = study_run
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(load(work, "s1").trials) == 3
    assert not [line for line in result.output.splitlines() if line.startswith("trial #")]
    _, parents, children = mlflow_runs(work, "opt", "s1")
    assert len(parents) == 1 and len(children) == 3


def test_changed_settings_under_the_same_study_name_are_refused(study_run):
    _, args, _ = study_run
    result = CliRunner().invoke(app, [*args, "--epochs", "3"])
    assert result.exit_code == 2, result.output
    assert "was created with other settings (train.epochs 2 -> 3)" in " ".join(
        result.output.split()
    )
    assert "Traceback" not in result.output


def test_interrupted_study_resumes_to_exactly_n(faces_dir, session_cache, tmp_path, monkeypatch):
    import mtlbench.training.fit

    real_fit = mtlbench.training.fit.fit
    calls = []

    def interrupt_second_trial(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)

    args = optuna_args(
        tmp_path, faces_dir, session_cache, "--strategies", "sum,dwa", "--n-trials", "3",
        "--study-name", "r", "--epochs", "1",
    )  # fmt: skip
    monkeypatch.setattr(mtlbench.training.fit, "fit", interrupt_second_trial)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130, result.output
    study = load(tmp_path, "r")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    _, parents, children = mlflow_runs(tmp_path, "opt", "r")
    assert parents[0].info.status == "KILLED"
    killed = [c for c in children if c.data.tags["mtlbench.trial_number"] == "1"]
    assert killed[0].info.status == "KILLED"
    assert killed[0].data.tags["mtlbench.status"] == "interrupted"

    monkeypatch.setattr(mtlbench.training.fit, "fit", real_fit)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    study = load(tmp_path, "r")
    assert len(study.get_trials(states=FINISHED)) == 3
    sets = finished_param_sets(study)
    assert len(set(sets)) == 3
    _, parents, children = mlflow_runs(tmp_path, "opt", "r")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4  # 3 finished + the interrupted one, all under the one parent
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}


def test_pruned_trials_count_and_are_marked_in_mlflow(
    faces_dir, session_cache, tmp_path, monkeypatch
):
    import mtlbench.runs.optuna.study

    class PruneAfterFirst(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            return trial.number > 0

    monkeypatch.setattr(mtlbench.runs.optuna.study, "make_pruner", lambda ctx: PruneAfterFirst())
    args = optuna_args(
        tmp_path, faces_dir, session_cache, "--strategies", "sum", "--n-trials", "2",
        "--study-name", "p",
    )  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    study = load(tmp_path, "p")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert study.trials[1].user_attrs["mtlbench.status"] == "pruned"
    _, _, children = mlflow_runs(tmp_path, "opt", "p")
    pruned = next(c for c in children if c.data.tags["mtlbench.trial_number"] == "1")
    assert pruned.data.tags["mtlbench.status"] == "pruned"
    assert pruned.data.tags["pruned_epoch"] == "0"  # of 2: never after the last epoch
    assert "test/age_mae" not in pruned.data.metrics


def test_pareto_objective_runs_nsga2_and_reports_the_front(faces_dir, session_cache, tmp_path):
    args = optuna_args(
        tmp_path, faces_dir, session_cache, "--strategies", "sum,dwa", "--n-trials", "3",
        "--study-name", "mo", "--objective", "pareto", "--epochs", "1",
    )  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    study = load(tmp_path, "mo")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE", "MAXIMIZE"]
    assert len(study.get_trials(states=FINISHED)) == 3
    client, parents, children = mlflow_runs(tmp_path, "opt", "mo")
    names = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"pareto_front.csv", "pareto_front.md", "pareto_front.png"} <= names
    front = {t.number for t in study.best_trials}
    tagged = {
        int(c.data.tags["mtlbench.trial_number"])
        for c in children
        if c.data.tags.get("mtlbench.pareto") == "true"
    }
    assert tagged == front and front
    assert "Pareto front:" in result.output


def test_delta_m_objective_once_single_task_baselines_exist(faces_dir, session_cache, tmp_path):
    from mtlbench.report.tables import delta_m

    grid = optuna_args(
        tmp_path, faces_dir, session_cache, "--strategies", "stl,sum", "--epochs", "1"
    )
    grid[grid.index("optuna")] = "grid"
    assert CliRunner().invoke(app, grid).exit_code == 0
    args = optuna_args(
        tmp_path, faces_dir, session_cache, "--strategies", "sum", "--n-trials", "1",
        "--study-name", "dm", "--epochs", "1",
    )  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    study = load(tmp_path, "dm")
    objective = study.user_attrs["mtlbench.objective"]
    assert objective["kind"] == "val_delta_m"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("opt")
    stl = client.search_runs([exp.experiment_id], "params.tasks != 'age,gender,race'")
    base = {r.data.params["tasks"]: r.data.params for r in stl}
    expected = {
        "age": float(base["age"]["best.val_age_mae"]),
        "gender": float(base["gender"]["best.val_gender_acc"]),
        "race": float(base["race"]["best.val_race_acc"]),
    }
    assert objective["baselines"] == pytest.approx(expected)
    _, parents, children = mlflow_runs(tmp_path, "opt", "dm")
    assert parents[0].data.params["objective"] == "val_delta_m"
    m = {k: float(v) for k, v in children[0].data.params.items() if k.startswith("best.")}
    mine = {"age": m["best.val_age_mae"], "gender": m["best.val_gender_acc"]}
    mine["race"] = m["best.val_race_acc"]
    assert study.trials[0].value == pytest.approx(delta_m(mine, expected))
    assert m["best.val_delta_m"] == pytest.approx(study.trials[0].value)


def test_bad_storage_and_unknown_study_are_one_line_errors(study_run, tmp_path):
    work, _, _ = study_run
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--search", "optuna", "--storage", "nosuchdb://x/y"])
    assert result.exit_code == 2, result.output
    assert "is not a usable SQLAlchemy URL" in result.output and "Traceback" not in result.output
    result = runner.invoke(
        app, ["worker", "--study-name", "nope", "--storage", f"sqlite:///{work / 'optuna.db'}"]
    )
    assert result.exit_code == 2, result.output
    assert "no Optuna study named 'nope'" in result.output and "s1" in result.output
    result = runner.invoke(
        app, ["worker", "--study-name", "s1", "--storage", f"sqlite:///{tmp_path / 'x.db'}"]
    )
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(app, ["run", "--search", "optuna", "--strategies", "sum,stl"])
    assert result.exit_code == 2 and "single-task baselines come from a grid" in result.output
