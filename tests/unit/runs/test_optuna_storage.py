"""Optuna storage URLs: defaults, clear errors, counting (SQLite in a temp dir, no training)."""

from __future__ import annotations

import time

import optuna
import pytest

from mtlbench.runs.optuna.storage import (
    SilentTrials,
    StorageError,
    count,
    default_storage,
    fail_stale_trials,
    load_study,
    open_storage,
    redact,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_default_storage_sits_next_to_a_sqlite_mlflow_store(tmp_path, monkeypatch):
    assert default_storage(f"sqlite:///{tmp_path}/runs/mlflow.db") == (
        f"sqlite:///{tmp_path}/runs/optuna.db"
    )
    monkeypatch.chdir(tmp_path)
    assert default_storage("sqlite:///mlflow.db") == f"sqlite:///{tmp_path}/optuna.db"
    assert default_storage("http://mlflow:5000") == f"sqlite:///{tmp_path}/optuna.db"


def test_redact_hides_the_password():
    shown = redact("postgresql://bob:s3cret@db.example:5432/optuna")
    assert "s3cret" not in shown and "bob" in shown and "db.example" in shown


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("not a url", "is not a usable SQLAlchemy URL"),
        ("nosuchdb://x/y", "is not a usable SQLAlchemy URL"),
        # Which line depends on whether this environment has a PostgreSQL driver installed
        # (the nox `tests` venv has none; the `postgres` session does).
        (
            "postgresql://u:pw@127.0.0.1:1/optuna",
            "cannot open Optuna storage|needs the database driver 'psycopg'",
        ),
    ],
)
def test_bad_storage_urls_give_one_clear_line(url, needle):
    with pytest.raises(StorageError, match=needle) as err:
        open_storage(url, heartbeat_s=60, max_retry=3, create=True)
    assert "pw" not in str(err.value) and "\n" not in str(err.value)


def test_a_worker_does_not_create_a_missing_sqlite_file(tmp_path):
    path = tmp_path / "optuna.db"
    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"sqlite:///{path}", heartbeat_s=60, max_retry=3)
    assert not path.exists()


def test_unknown_study_names_the_existing_ones(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/o.db", heartbeat_s=60, max_retry=3, create=True)
    optuna.create_study(storage=storage, study_name="alpha")
    with pytest.raises(StorageError, match=r"no Optuna study named 'beta'.*studies there: alpha"):
        load_study(storage, "beta")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_count_splits_states(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/o.db", heartbeat_s=60, max_retry=3, create=True)
    study = optuna.create_study(storage=storage, study_name="s")
    study.tell(study.ask(), 1.0)
    study.tell(study.ask(), state=optuna.trial.TrialState.PRUNED)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    study.ask()
    c = count(study)
    assert (c.finished, c.running, c.waiting, c.failed, c.taken) == (2, 1, 0, 1, 3)


def test_two_creators_of_one_fresh_sqlite_file_do_not_crash(tmp_path):
    # Without the creation lock this fails almost every time ("table studies already exists").
    import threading

    for i in range(4):
        url = f"sqlite:///{tmp_path / str(i) / 'optuna.db'}"
        errors: list[BaseException] = []

        def create(url: str = url, errors: list[BaseException] = errors) -> None:
            try:
                open_storage(url, heartbeat_s=60, max_retry=1, create=True)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=create) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_trial_that_never_sent_a_heartbeat_is_failed_and_requeued(tmp_path):
    """A worker killed between Optuna's ask and its first heartbeat: Optuna's own stale check
    never fails that trial; SilentTrials does, one grace period (2 s here) after first seeing it,
    and the retry callback puts a WAITING copy back. A trial with a heartbeat is left alone."""
    from optuna.trial import TrialState

    url = f"sqlite:///{tmp_path}/optuna.db"
    storage = open_storage(url, heartbeat_s=1, max_retry=3, create=True)
    study = optuna.create_study(study_name="s", storage=storage)
    orphan = study.ask()  # RUNNING, no heartbeat: its worker "died" right after ask
    alive = study.ask()
    storage.record_heartbeat(alive._trial_id)
    watch = SilentTrials()

    fail_stale_trials(study, watch)  # first sighting: not yet
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING] * 2
    optuna.storages.fail_stale_trials(study)  # Optuna alone never fails it
    storage.record_heartbeat(alive._trial_id)
    assert study.get_trials()[orphan.number].state == TrialState.RUNNING

    time.sleep(2.2)
    storage.record_heartbeat(alive._trial_id)  # the live worker keeps beating
    fail_stale_trials(study, watch)
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING]
    retry = study.get_trials()[2]
    assert retry.system_attrs["failed_trial"] == orphan.number
    assert count(study).waiting == 1 and count(study).running == 1
    fail_stale_trials(study, watch)  # failed once, never twice
    assert [t.state for t in study.get_trials()] == states
