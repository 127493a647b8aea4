"""What a trial shows in MLflow's own views besides mtlbench's metrics: the data it trained on
(a dataset input: the runs table's Dataset column) and the machine's load while it trained
(system metrics, ``system/...``)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow.entities import Dataset
    from mlflow.tracking import MlflowClient

DATASET_CONTEXT = "training"  # the dataset input's mlflow.data.context tag
SYSTEM_METRICS_INTERVAL_S = 5.0  # seconds between system-metric samples
SYSTEM_METRICS_CHOICES = ("auto", "on", "off")


def dataset_name(source: str) -> str:
    """``synthetic``, or the folder/archive name without its suffixes (``UTKFace``)."""
    if source == "synthetic":
        return "synthetic"
    name = Path(source.rstrip("/")).name
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def dataset_entity(params: Mapping[str, str]) -> Dataset:
    """The MLflow dataset a trial trained on, from its data params (``data``, ``data_sha256``,
    split sizes, ``image_size``): name, digest (first 16 hex of the content sha256; the full
    one is in the profile), source and a profile MLflow shows beside it."""
    from mlflow.entities import Dataset

    source = params["data"]
    sha = params["data_sha256"]
    plugin = params.get("dataset", "utkface")
    name = dataset_name(source) if plugin == "utkface" else plugin
    if source == "synthetic":
        source_type, where = "code", {"generator": "mtlbench.data.synthetic"}
    elif plugin != "utkface" and not Path(source).exists():
        # A plug-in that builds its data (multi-digits: from scikit-learn): no file to point at.
        source_type, where = "code", {"generator": f"mtlbench dataset plug-in {plugin}"}
    else:
        source_type, where = "local", {"uri": Path(source).absolute().as_uri()}
    profile = {
        "sha256": sha,
        "split_sha256": params.get("split_sha256", ""),
        "num_rows": sum(int(params.get(f"n_{s}", 0)) for s in ("train", "val", "test")),
        "n_train": int(params.get("n_train", 0)),
        "n_val": int(params.get("n_val", 0)),
        "n_test": int(params.get("n_test", 0)),
        "image_size": int(params.get("image_size", 0)),
        "max_samples": params.get("max_samples", "all"),
    }
    return Dataset(
        name=name,
        digest=sha[:16],
        source_type=source_type,
        source=json.dumps(where),
        profile=json.dumps(profile),
    )


def log_dataset(
    client: MlflowClient, run_id: str, params: Mapping[str, str], context: str = DATASET_CONTEXT
) -> None:
    """Record the trial's data as a dataset input of ``run_id`` (the UI's Dataset column)."""
    from mlflow.entities import DatasetInput, InputTag

    tag = InputTag(key="mlflow.data.context", value=context)
    client.log_inputs(run_id, datasets=[DatasetInput(dataset_entity(params), tags=[tag])])


# --- system metrics -------------------------------------------------------------------------


def wants_system_metrics(choice: str, device_type: str) -> bool:
    """``auto`` samples system metrics on CUDA runs only: on a CPU host the sampler competes
    with training for the same cores, and the numbers say little there."""
    if choice not in SYSTEM_METRICS_CHOICES:
        raise ValueError(
            f"system metrics {choice!r} is not one of {', '.join(SYSTEM_METRICS_CHOICES)}"
        )
    return choice == "on" or (choice == "auto" and device_type == "cuda")


@contextmanager
def system_metrics(
    run_id: str, tracking_uri: str, enabled: bool, interval_s: float | None = None
) -> Iterator[None]:
    """Sample CPU, memory, disk, network and (with NVML) GPU use into ``system/...`` metrics of
    ``run_id`` while the block runs; at least one sample even when the block is shorter than
    the sampling interval (MLflow's monitor would log none then)."""
    if not enabled:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    # MLflow logs its monitor's start and stop at INFO on every trial.
    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
    interval = interval_s or float(
        os.environ.get("MTLBENCH_SYSTEM_METRICS_INTERVAL", SYSTEM_METRICS_INTERVAL_S)
    )
    monitor = SystemMetricsMonitor(
        run_id, sampling_interval=interval, samples_before_logging=1, tracking_uri=tracking_uri
    )
    monitor.start()
    try:
        yield
    finally:
        _finish(monitor)


def _finish(monitor: Any) -> None:
    monitor._shutdown_event.set()
    if monitor._process is not None:
        monitor._process.join()
        monitor._process = None
    if monitor._logging_step == 0:
        # The block ended before the first sample was published: take one now.
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
    monitor.mlflow_logger.flush()


@contextmanager
def observe_trial(
    client: MlflowClient,
    run_id: str,
    tracking_uri: str,
    data_params: Mapping[str, str],
    *,
    system_metrics_on: bool,
) -> Iterator[None]:
    """Around one trial's training: its dataset input (once: a resumed run has it already)
    and, when asked, system metrics sampled while it trains."""
    inputs = client.get_run(run_id).inputs
    if inputs is None or not inputs.dataset_inputs:
        log_dataset(client, run_id, data_params)
    with system_metrics(run_id, tracking_uri, system_metrics_on):
        yield
