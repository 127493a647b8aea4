"""mtlbench's runs in MLflow: every tag name, writing and reading runs.

(What MLflow shows natively besides, dataset inputs, system metrics and logged models, is added
by :mod:`mtlbench.runs.observe` and :mod:`mtlbench.runs.models`.)

Writing goes through :class:`Tracker` / :class:`TrackedRun` (explicit ``MlflowClient`` calls, no
global "active run" state, so several trials or processes never step on each other).
Reading goes through :func:`load_trials` and :func:`load_histories`, which return pandas frames;
reports and plots consume only those.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mtlbench.infra.interrupts import ShieldedProxy
from mtlbench.infra.locks import file_lock, sidecar

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient


class RunKind(enum.StrEnum):
    """What an MLflow run of mtlbench is (tag ``mtlbench.kind``)."""

    STUDY = "study"  # the parent run of a grid or Optuna study
    TRIAL = "trial"  # one (strategy, lr, seed) training run, a child of its study
    REPORT = "report"  # the files of ``mtlbench report``


class Status(enum.StrEnum):
    """How a trial ended (tag ``mtlbench.status``; the Optuna user attribute of the same name)."""

    FINISHED = "finished"
    DIVERGED = "diverged"
    PRUNED = "pruned"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


# A trial in one of these states is done: --resume keeps it instead of running it again.
FINAL_STATUSES: frozenset[str] = frozenset({Status.FINISHED, Status.DIVERGED, Status.PRUNED})

# Every MLflow tag name mtlbench writes; tests and other tools read runs back by these.
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
KIND_TAG = "mtlbench.kind"  # a RunKind
STATUS_TAG = "mtlbench.status"  # a Status
SIGNATURE_TAG = "mtlbench.signature"  # fingerprint of a study's definition, to find it for --resume
N_TRIALS_TAG = "mtlbench.n_trials"  # trials a study asks for
PARENT_NAME_TAG = "mtlbench.parent_name"  # the experiment of a trial's study
LR_TAG = "mtlbench.lr"  # a trial's exact learning rate (the lr param is rounded, "%g")
HOST_TAG = "mtlbench.host"  # the machine a trial trained on: step costs compare within one
CHECKPOINT_DIR_TAG = "mtlbench.checkpoint_dir"  # where a trial's checkpoints live
RESUMED_FROM_TAG = "mtlbench.resumed_from_epoch"  # last epoch of the checkpoint a trial continued
STUDY_TAG = "mtlbench.study_name"  # Optuna study of a parent or trial run
TRIAL_TAG = "mtlbench.trial_number"  # Optuna trial number of a trial run
RETRY_TAG = "mtlbench.retry_of"  # the trial number a retried trial repeats
WORKER_TAG = "mtlbench.worker"  # host:pid of the worker that ran the trial
PARETO_TAG = "mtlbench.pareto"  # "true" on the trials of an Optuna Pareto front
REPORT_PARENTS_TAG = "mtlbench.parent_run_ids"  # studies a report run was built from
ERROR_TAG = "error"  # one-line error of a failed trial
# Set on a trial where more than FALLBACK_LIMIT of the steps used the strategy's documented
# fallback instead of the method's own solution; the value is that fraction.
SOLVER_FALLBACK_TAG = "mtlbench.solver_fallback"
FALLBACK_LIMIT = 0.01
# A trial's declared tasks as JSON (``TaskSet.to_json``): reports derive every column, label
# and direction from it; absent on runs made before dataset plug-ins (UTKFace's tasks).
TASKS_TAG = "mtlbench.tasks"
# Final metrics ``reference/test_<metric>``: each task's constant predictor (fitted on the
# training split) on the test split, the row every model must beat.
REFERENCE_PREFIX = "reference/test_"


def _quiet_mlflow() -> None:
    # MLflow and alembic log every schema migration at INFO on first use of a store.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_client(uri: str) -> MlflowClient:
    """An MLflow client whose every call finishes before Ctrl-C / SIGTERM takes effect
    (see :mod:`mtlbench.infra.interrupts`: an interrupted SQLite call keeps the store locked)."""
    from mlflow.tracking import MlflowClient

    # After the import: importing mlflow (re)configures its loggers at INFO.
    _quiet_mlflow()
    return cast("MlflowClient", ShieldedProxy(MlflowClient(tracking_uri=uri)))


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class TrackedRun:
    client: MlflowClient
    run_id: str

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp_ms: int | None = None
    ) -> None:
        from mlflow.entities import Metric

        ts = timestamp_ms if timestamp_ms is not None else _now_ms()
        items = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    def reopen(self) -> None:
        """Mark a killed/failed run RUNNING again before continuing it."""
        self.client.update_run(self.run_id, status="RUNNING")


@dataclass(frozen=True)
class ChildRun:
    run: TrackedRun
    strategy: str
    lr: str
    seed: str
    status: str  # the mtlbench.status tag ("" while running or when killed hard)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative or absolute), else None."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]).absolute() if uri.startswith(prefix) else None


def default_checkpoint_root(uri: str) -> Path:
    """Checkpoints live beside the SQLite store the user chose (or in the working directory
    for a remote store), so nothing is written anywhere the user did not point at."""
    db = sqlite_path(uri)
    return (db.parent if db is not None else Path.cwd()) / "mtlbench-checkpoints"


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise first use of a SQLite store across processes: MLflow creates the schema on
    first touch, and two processes doing it at once crash ("table ... already exists")."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    with file_lock(sidecar(db)):
        yield


class Tracker:
    """One MLflow experiment in one tracking store."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri = uri
        with _store_lock(uri):
            self.client = make_client(uri)
            self.experiment_id = self._experiment_id(experiment)
            # Every experiment mtlbench writes to opens on MLflow's model-training view.
            mark_training_experiment(self.client, self.experiment_id)

    def _experiment_id(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return str(exp.experiment_id)
        db = sqlite_path(self.uri)
        # With a SQLite store, artifacts go next to the database the user chose, not into
        # ./mlruns of whatever directory the command happens to run in.
        location = (db.parent / "mlruns" / name).as_uri() if db is not None else None
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except Exception:
            # Another process (without our lock: a remote store) created it meanwhile.
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return str(exp.experiment_id)

    def start_run(
        self,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        parent: TrackedRun | None = None,
    ) -> TrackedRun:
        all_tags = {"mlflow.runName": name, **{k: str(v) for k, v in (tags or {}).items()}}
        if parent is not None:
            all_tags[PARENT_TAG] = parent.run_id
        info = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        run = TrackedRun(self.client, info.info.run_id)
        if params:
            run.log_params(params)
        return run

    def find_unfinished_study(self, signature: str) -> TrackedRun | None:
        """The newest parent run with this signature that did not finish (killed, failed or
        left RUNNING by a process killed with SIGKILL)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{KIND_TAG}` = 'study' and tags.`{SIGNATURE_TAG}` = '{signature}'",
            order_by=["attributes.start_time DESC"],
            max_results=20,
        )
        for r in runs:
            if r.info.status != "FINISHED":
                return TrackedRun(self.client, r.info.run_id)
        return None

    def children(self, parent: TrackedRun) -> list[ChildRun]:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent.run_id}'",
            max_results=50000,
        )
        return [
            ChildRun(
                TrackedRun(self.client, r.info.run_id),
                r.data.params.get("strategy", ""),
                r.data.tags.get(LR_TAG) or r.data.params.get("lr", ""),
                r.data.params.get("seed", ""),
                r.data.tags.get(STATUS_TAG, ""),
            )
            for r in runs
        ]

    def find_runs(self, tags: Mapping[str, str]) -> list[tuple[TrackedRun, str]]:
        """Runs of this experiment carrying every tag in ``tags``, oldest first, with their
        MLflow status (an Optuna study's parent run is found again by its study-name tag)."""
        filt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=filt,
            order_by=["attributes.start_time ASC"],
            max_results=50000,
        )
        return [(TrackedRun(self.client, r.info.run_id), str(r.info.status)) for r in runs]


def log_metrics(uri: str, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Add metrics to an existing (possibly finished) run, e.g. delta-m once baselines exist."""
    TrackedRun(make_client(uri), run_id).log_metrics(metrics, step=step)


def tracking_uri_for_ui(uri: str) -> str:
    """The store URI as ``mlflow ui --backend-store-uri`` wants it (absolute sqlite path)."""
    db = sqlite_path(uri)
    return f"sqlite:///{db}" if db is not None else uri


# --- MLflow's own views ---------------------------------------------------------------------

# MLflow 3 reads this experiment tag to choose between its GenAI and model-training views.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
# MLflow 3.17's UI follows the URL parameter (or the browser's remembered choice) first.
WORKFLOW_QUERY = "workflowType=machine_learning"


def mark_training_experiment(client: MlflowClient, experiment_id: str) -> None:
    """Tag ``experiment_id`` as a model-training experiment (idempotent)."""
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)


def runs_table_url(base_url: str, experiment_id: str) -> str:
    """The UI address of ``experiment_id``'s runs table in the model-training view."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{WORKFLOW_QUERY}"


# --- reading --------------------------------------------------------------------------------


def _experiment(client: MlflowClient, name: str) -> Any:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise ValueError(
            f"no MLflow experiment named {name!r} in this store; experiments: {', '.join(names)}"
        )
    return exp


def load_trials(
    uri: str, experiment: str, parent_run_ids: Iterable[str] | None = None
) -> pd.DataFrame:
    """One row per trial run: run_id, status, params (``param.<k>``), final metrics, tags."""
    import pandas as pd

    client = make_client(uri)
    exp = _experiment(client, experiment)
    filt = f"tags.`{KIND_TAG}` = 'trial'"
    runs = client.search_runs([exp.experiment_id], filter_string=filt, max_results=50000)
    wanted = set(parent_run_ids) if parent_run_ids is not None else None
    rows: list[dict[str, Any]] = []
    for r in runs:
        parent = r.data.tags.get(PARENT_TAG)
        if wanted is not None and parent not in wanted:
            continue
        row: dict[str, Any] = {
            "run_id": r.info.run_id,
            "parent_run_id": parent,
            "run_status": r.info.status,
            "status": r.data.tags.get(STATUS_TAG, "unknown"),
            "start_time": r.info.start_time,
        }
        row.update({f"param.{k}": v for k, v in r.data.params.items()})
        row.update(r.data.metrics)
        row.update(_best_values(r.data.params))
        row.update({f"tag.{k}": v for k, v in r.data.tags.items() if not k.startswith("mlflow.")})
        rows.append(row)
    return pd.DataFrame(rows)


def _best_values(params: Mapping[str, str]) -> dict[str, float]:
    """Params ``best.epoch`` / ``best.val_<k>`` (see ``train.best_params``) as the columns
    ``best_epoch`` / ``best_val/<k>`` the reports read."""
    out: dict[str, float] = {}
    for key, value in params.items():
        if key == "best.epoch":
            out["best_epoch"] = float(value)
        elif key.startswith("best.val_"):
            out[f"best_val/{key[len('best.val_') :]}"] = float(value)
    return out


def load_histories(uri: str, run_ids: Iterable[str], keys: Iterable[str]) -> pd.DataFrame:
    """Long frame (run_id, key, step, value) of per-epoch metric histories, one value per step.

    A trial restarted without its checkpoint (one carried to another machine, or whose
    checkpoint was lost) logs the epochs it re-runs a second time; the newest value of a step
    is the one its final model went through, so earlier ones are dropped.
    """
    import pandas as pd

    client = make_client(uri)
    rows = [
        {"run_id": rid, "key": key, "step": m.step, "value": m.value, "ts": m.timestamp}
        for rid in run_ids
        for key in keys
        for m in client.get_metric_history(rid, key)
    ]
    frame = pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "ts"])
    # A stable sort keeps the store's order between values logged in the same millisecond.
    frame = frame.sort_values("ts", kind="stable")
    frame = frame.drop_duplicates(["run_id", "key", "step"], keep="last")
    return frame.sort_values(["run_id", "key", "step"]).drop(columns="ts").reset_index(drop=True)
