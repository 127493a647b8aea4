"""The only module that talks to MLflow.

Writing goes through :class:`Tracker` / :class:`TrackedRun` (explicit ``MlflowClient`` calls,
no global "active run" state, so several trials or processes never step on each other).
Reading goes through :func:`load_trials` and :func:`load_histories`, which return pandas frames;
reports and plots consume only those.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
KIND_TAG = "mtlbench.kind"  # "study" for a parent run, "trial" for a child run
STATUS_TAG = "mtlbench.status"  # finished | diverged | failed


def _quiet_mlflow() -> None:
    # MLflow and alembic log every schema migration at INFO on first use of a store.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def make_client(uri: str) -> MlflowClient:
    from mlflow.tracking import MlflowClient

    # After the import: importing mlflow (re)configures its loggers at INFO.
    _quiet_mlflow()
    return MlflowClient(tracking_uri=uri)


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

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        ts = _now_ms()
        items = [Metric(k, float(v), ts, step or 0) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


class Tracker:
    """One MLflow experiment in one tracking store."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri = uri
        self.client = make_client(uri)
        self.experiment_id = self._experiment_id(experiment)

    def _experiment_id(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return str(exp.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except Exception:
            # Another process created it between our lookup and create.
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


def log_metrics(uri: str, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Add metrics to an existing (possibly finished) run, e.g. delta-m once baselines exist."""
    TrackedRun(make_client(uri), run_id).log_metrics(metrics, step=step)


def tracking_uri_for_ui(uri: str) -> str:
    """The store URI as ``mlflow ui --backend-store-uri`` wants it (absolute sqlite path)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + os.path.abspath(uri[len(prefix) :])
    return uri


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
        row.update({f"tag.{k}": v for k, v in r.data.tags.items() if not k.startswith("mlflow.")})
        rows.append(row)
    return pd.DataFrame(rows)


def load_histories(uri: str, run_ids: Iterable[str], keys: Iterable[str]) -> pd.DataFrame:
    """Long frame (run_id, key, step, value) of per-epoch metric histories."""
    import pandas as pd

    client = make_client(uri)
    rows = [
        {"run_id": rid, "key": key, "step": m.step, "value": m.value}
        for rid in run_ids
        for key in keys
        for m in client.get_metric_history(rid, key)
    ]
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])
