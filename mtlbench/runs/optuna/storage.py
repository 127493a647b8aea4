"""Optuna storage: open it (heartbeats, retry of dead workers' trials), load studies, count.

A study lives in an Optuna RDB storage: by default a SQLite file next to the MLflow database
(several processes on one machine share it), or any SQLAlchemy URL (PostgreSQL) that workers on
several machines reach. Tables and the study are created by ONE process before any worker
starts: two processes creating one fresh SQLite file at once crash about one time in three.
Workers open the storage without creating tables.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtlbench.infra.errors import UserError
from mtlbench.infra.locks import file_lock, sidecar

if TYPE_CHECKING:
    import optuna
    from optuna.storages import RDBStorage

DEFAULT_FILE = "optuna.db"


class StorageError(UserError):
    """The Optuna storage URL is unusable or the study is missing; the message says why."""


def default_storage(tracking_uri: str) -> str:
    """``sqlite:///<dir>/optuna.db`` next to a SQLite MLflow store, else in the working
    directory; always an absolute path, so worker processes started elsewhere agree."""
    prefix = "sqlite:///"
    folder = Path.cwd()
    if tracking_uri.startswith(prefix):
        folder = Path(os.path.abspath(tracking_uri[len(prefix) :])).parent
    return prefix + str(folder / DEFAULT_FILE)


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages and MLflow params."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: nothing secret to hide in a parse error
        return url


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :]
    return None if path in ("", ":memory:") else Path(path)


def _retry_kwargs(max_retry: int) -> dict[str, Any]:
    # Optuna 4.9 renamed the callback and the RDBStorage argument; accept both spellings.
    import optuna.storages as st

    cls = getattr(st, "RetryHeartbeatStaleTrialCallback", None) or st.RetryFailedTrialCallback
    params = inspect.signature(st.RDBStorage.__init__).parameters
    key = (
        "heartbeat_stale_trial_callback"
        if "heartbeat_stale_trial_callback" in params
        else "failed_trial_callback"
    )
    return {key: cls(max_retry=max_retry)}


def open_storage(url: str, *, heartbeat_s: int, max_retry: int, create: bool = False) -> RDBStorage:
    """Open ``url`` with heartbeats every ``heartbeat_s`` s; a RUNNING trial silent for twice
    that is failed by the next worker that looks and re-queued (at most ``max_retry`` times).

    Only the coordinator passes ``create=True`` (tables are created then, once).
    """
    import sqlalchemy.exc
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import RDBStorage

    shown = redact(url)
    path = _sqlite_path(url)
    if path is not None and not create and not path.is_file():
        raise StorageError(
            f"no Optuna storage at {shown!r} (file {str(path)!r} does not exist); create the "
            "study first with `mtlbench run --search optuna ...`"
        )
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several local workers write heartbeats and trials: wait for the lock, do not fail.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        with warnings.catch_warnings(), _creation_lock(path if create else None):
            warnings.simplefilter("ignore", ExperimentalWarning)
            extra: dict[str, Any] = _retry_kwargs(max_retry)
            if not create and "skip_table_creation" in inspect.signature(RDBStorage).parameters:
                extra["skip_table_creation"] = True
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_s,
                grace_period=2 * heartbeat_s,
                **extra,
            )
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError) as exc:
        raise StorageError(
            f"--storage {shown!r} is not a usable SQLAlchemy URL ({_first_line(exc)}); "
            "examples: sqlite:///optuna.db, postgresql://user:password@host:5432/optuna"
        ) from None
    except ImportError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
        module = getattr(cause, "name", None) or "its driver"
        raise StorageError(
            f"--storage {shown!r} needs the database driver {module!r}, which is not installed; "
            "for PostgreSQL: pip install 'psycopg[binary]' (postgresql:// with SQLAlchemy 2.1) "
            "or psycopg2-binary (postgresql+psycopg2://)"
        ) from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise StorageError(f"cannot open Optuna storage {shown!r}: {_first_line(exc)}") from None


@contextmanager
def _creation_lock(path: Path | None) -> Iterator[None]:
    """Serialise table creation in one SQLite file: two processes creating a fresh file at once
    fail ("table studies already exists"; measured 10 times in 12 without this lock)."""
    if path is None:
        yield
        return
    with file_lock(sidecar(path)):
        yield


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__


def load_study(
    storage: RDBStorage,
    name: str,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """The existing study ``name``; a missing one is a :class:`StorageError` naming the others."""
    import optuna

    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        where = redact(storage.url)
        listed = ", ".join(sorted(names)) if names else "none"
        raise StorageError(
            f"no Optuna study named {name!r} in {where!r}; studies there: {listed}"
        ) from None


def study_exists(storage: RDBStorage, name: str) -> bool:
    import optuna

    return name in optuna.get_all_study_names(storage)


@dataclass(frozen=True)
class Counts:
    finished: int  # COMPLETE + PRUNED: a trained trial with its outcome (a result)
    running: int
    waiting: int  # re-queued retries of dead workers' trials
    failed: int

    @property
    def taken(self) -> int:
        """Slots of the study's budget that are done or being worked on."""
        return self.finished + self.running + self.waiting


def count(study: optuna.Study) -> Counts:
    from optuna.trial import TrialState

    states = [t.state for t in study.get_trials(deepcopy=False)]
    return Counts(
        finished=sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states),
        running=states.count(TrialState.RUNNING),
        waiting=states.count(TrialState.WAITING),
        failed=states.count(TrialState.FAIL),
    )


def fail_stale_trials(study: optuna.Study, silent: SilentTrials | None = None) -> None:
    """Fail RUNNING trials whose heartbeat stopped (their worker died) and re-queue them;
    with ``silent``, also those that never sent one (see :class:`SilentTrials`)."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    if silent is not None:
        silent.fail_dead(study)


class SilentTrials:
    """RUNNING trials that never recorded a heartbeat, failed and re-queued once they stay silent
    for the grace period.

    Optuna judges staleness by the last heartbeat only, and skips trials that have none: a worker
    killed between ``ask`` and its first heartbeat (milliseconds apart) leaves a RUNNING trial no
    one would ever fail, and a study waiting for it would wait forever. Time is measured on this
    process's monotonic clock from the first sighting, never by comparing timestamps written by
    other machines, whose clocks and time zones may differ. A live worker records its first
    heartbeat right after ``ask``, so it is never silent for a grace period.
    """

    def __init__(self) -> None:
        self._first_seen: dict[int, float] = {}

    def fail_dead(self, study: optuna.Study) -> list[int]:
        """Fail (and re-queue through the storage's retry callback) every trial silent since
        a sighting at least one grace period ago; returns their trial ids."""
        import copy
        import time

        import optuna
        from optuna.storages import RDBStorage
        from optuna.trial import TrialState

        storage = study._storage  # Optuna wraps the RDBStorage in a caching layer: write
        backend = getattr(storage, "_backend", storage)  # through it, query the database
        if not isinstance(backend, RDBStorage) or backend.heartbeat_interval is None:
            return []
        grace = float(backend.grace_period or 2 * backend.heartbeat_interval)
        now = time.monotonic()
        silent = set(_trials_without_heartbeat(backend, study._study_id))
        self._first_seen = {t: self._first_seen.get(t, now) for t in silent}
        dead = [t for t, seen in self._first_seen.items() if now - seen >= grace]
        failed = []
        for trial_id in dead:
            del self._first_seen[trial_id]
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    failed.append(trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # finished or failed by another process meanwhile
        # Optuna 4.9 renamed the getter with the callback (see _retry_kwargs).
        getter = getattr(backend, "get_heartbeat_stale_trial_callback", None)
        retry = getter() if getter is not None else backend.get_failed_trial_callback()
        if retry is not None:
            for trial_id in failed:
                retry(study, copy.deepcopy(storage.get_trial(trial_id)))
        return failed


def _trials_without_heartbeat(storage: RDBStorage, study_id: int) -> list[int]:
    """Ids of the study's RUNNING trials that have no heartbeat row. Optuna has no public call
    for this; its heartbeat table is read the way its own ``_get_stale_trial_ids`` reads it."""
    from optuna.storages._rdb import models
    from optuna.trial import TrialState

    session = storage.scoped_session()
    try:
        rows = (
            session.query(models.TrialModel.trial_id)
            .outerjoin(
                models.TrialHeartbeatModel,
                models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id,
            )
            .filter(models.TrialModel.study_id == study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .filter(models.TrialHeartbeatModel.trial_heartbeat_id.is_(None))
            .all()
        )
        session.commit()
    finally:
        session.close()
    return [int(r[0]) for r in rows]
