"""Log trained HydraNets as MLflow PyTorch models once a study has finished.

A trial keeps its best-epoch weights (the ``best`` checkpoint) when models are to be logged;
after the last trial, :func:`publish_models` picks the trials to keep (``--log-model best``:
per strategy, the learning rate the leaderboard picks (fewest diverged or failed seeds, then
the lowest mean validation score), then that lr's best seed; ``all``: every finished trial),
logs each as ``model`` in its own (finished) run, registers the overall winner when asked, and
removes the kept checkpoints. Wrapped by :class:`~mtlbench.predict.exported.ExportedHydraNet`,
a model takes uint8 images and carries a :class:`~mtlbench.predict.card.ModelCard` in its
metadata, which is all ``mtlbench predict`` needs.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mtlbench.predict.card import ModelCard, TaskCard
from mtlbench.predict.run import ARTIFACT, CARD_KEY
from mtlbench.tracking import TASKS_TAG

if TYPE_CHECKING:
    import pandas as pd

    from mtlbench.config import RunConfig
    from mtlbench.infra.progress import Reporter
    from mtlbench.mtl.tasks import Task, TaskSet

SELECTION = "best_val/score"  # lower is better, as on the leaderboard


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    strategy: str
    uri: str  # runs:/<run_id>/model
    registered: str | None = None  # models:/<name>/<version> for the registered winner


def model_card(
    dataset: str, image_size: int, tasks: Sequence[Task] | None = None, channels: int = 3
) -> ModelCard:
    """What ``mtlbench predict`` needs: the declared heads (class names, units) and the input
    (one channel: ImageNet's mean statistics, as training normalised it)."""
    from mtlbench.data.normalize import IMAGENET_MEAN, IMAGENET_STD
    from mtlbench.mtl.tasks import TASKS

    cards = tuple(
        TaskCard(t.name, t.kind, t.n_outputs, t.classes, t.unit) for t in (tasks or TASKS)
    )
    mean, std = tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)
    if channels == 1:
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    return ModelCard(
        dataset=dataset,
        tasks=cards,
        image_size=image_size,
        channels=channels,
        mean=mean,
        std=std,
    )


def choose(trials: pd.DataFrame, policy: str) -> list[int]:
    """Row positions of ``trials`` (a :func:`mtlbench.tracking.load_trials` frame) whose models
    to log: ``all`` finished trials, or per strategy the ``best`` one chosen on validation."""
    if policy == "none" or trials.empty:
        return []
    finished = trials[(trials["status"] == "finished") & trials[SELECTION].notna()]
    if policy == "all":
        return [trials.index.get_loc(i) for i in finished.index]
    if policy != "best":
        raise ValueError(f"log_model {policy!r} is not one of best, all, none")
    import pandas as pd

    from mtlbench.report import tables, verdict_stats

    chosen: list[int] = []
    rows = trials.assign(
        lr=pd.to_numeric(trials["param.lr"], errors="coerce"),
        seed=pd.to_numeric(trials.get("param.seed"), errors="coerce"),
    )
    for _, group in rows.groupby("param.strategy"):
        # The leaderboard's rule: fewest diverged or failed seeds, then mean validation score.
        candidates = tables.lr_candidates(group, pd.to_numeric(group[SELECTION]))
        if not candidates:
            continue
        lr = verdict_stats.choose_lr(candidates)
        best = finished[finished.index.isin(group.index[group["lr"] == lr])]
        chosen.append(trials.index.get_loc(best[SELECTION].idxmin()))
    return sorted(chosen)


def winner(trials: pd.DataFrame, rows: Sequence[int]) -> int | None:
    """Of the chosen rows, the multi-task trial (every task trained) with the lowest validation
    score: single-task baselines score only their own task and are not comparable."""
    best, best_score = None, math.inf
    for row in rows:
        rec = trials.iloc[row]
        all_tasks = str(rec.get("param.tasks", "")) == ",".join(_declared(rec).names)
        if all_tasks and float(rec[SELECTION]) < best_score:
            best, best_score = row, float(rec[SELECTION])
    return best


def _declared(rec: pd.Series) -> TaskSet:
    """A trial's declared tasks (its ``mtlbench.tasks`` tag; UTKFace's before plug-ins)."""
    from mtlbench.mtl.tasks import UTKFACE_TASKS, TaskSet

    spec = rec.get(f"tag.{TASKS_TAG}")
    return TaskSet.from_json(spec) if isinstance(spec, str) and spec else UTKFACE_TASKS


def publish_models(
    cfg: RunConfig, parent_run_ids: Sequence[str], reporter: Reporter
) -> list[LoggedModel]:
    """Log the chosen trials' models (and register the winner); remove kept best checkpoints."""
    from mtlbench.tracking import load_trials
    from mtlbench.training import checkpoint

    if cfg.tracking.log_model == "none":
        return []
    uri, experiment = cfg.tracking.resolved_uri, cfg.tracking.experiment
    trials = load_trials(uri, experiment, parent_run_ids).reset_index(drop=True)
    root = checkpoint.root_for(cfg.train.checkpoint_dir, uri)
    rows = [
        r
        for r in choose(trials, cfg.tracking.log_model)
        if checkpoint.exists(root / trials.iloc[r]["run_id"], checkpoint.BEST)
    ]
    top = winner(trials, rows)
    logged: list[LoggedModel] = []
    for row in rows:
        rec = trials.iloc[row]
        run_id = str(rec["run_id"])
        state = checkpoint.load(root / run_id, checkpoint.BEST)
        name = cfg.tracking.register_model if row == top else None
        logged.append(
            log_model(cfg, uri, run_id, str(rec["param.strategy"]), rec, state, register=name)
        )
        reporter.info(f"logged model {logged[-1].uri} ({rec['param.strategy']})")
        if logged[-1].registered:
            reporter.info(f"registered the winner as {logged[-1].registered}")
    if not cfg.train.keep_checkpoints:
        for run_id in trials["run_id"]:
            checkpoint.remove(root / str(run_id))
    return logged


def log_model(
    cfg: RunConfig,
    uri: str,
    run_id: str,
    strategy: str,
    rec: Any,
    state: dict[str, Any],
    register: str | None = None,
) -> LoggedModel:
    """Log one trial's best-epoch weights as ``runs:/<run_id>/model`` into its finished run."""
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch

    from mtlbench.mtl.model import build_model
    from mtlbench.predict.exported import ExportedHydraNet
    from mtlbench.runs.observe import dataset_name

    # A download progress bar per artifact would land on the user's terminal.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # mlflow.pytorch warns about pickle on every call; the models are the user's own, and the
    # pt2 alternative bakes the example's batch size into the graph.
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    size = int(rec.get("param.image_size", cfg.data.image_size))
    tasks = _declared(rec)
    channels = int(rec.get("param.channels", 3))
    plugin = str(rec.get("param.dataset", "utkface"))
    name = dataset_name(str(rec.get("param.data", "synthetic"))) if plugin == "utkface" else plugin
    card = model_card(name, size, tasks.tasks, channels)
    network = build_model(cfg.model, tasks.tasks, in_channels=channels)
    network.load_state_dict(state)
    exported = ExportedHydraNet(network, card).eval()
    example = np.zeros((2, card.channels, size, size), dtype=np.uint8)
    example[1] = 255
    with torch.inference_mode():
        output = exported(torch.from_numpy(example)).numpy()
    signature = mlflow.models.infer_signature(example, output)
    client = mlflow.MlflowClient(uri)
    before = client.get_run(run_id).info
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            exported,
            name=ARTIFACT,
            signature=signature,
            input_example=example,
            metadata={CARD_KEY: card.to_dict()},
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "mtlbench"],
            serialization_format="pickle",
        )
    # Logging reopened the run: give it back its own status and end time.
    client.set_terminated(run_id, status=before.status, end_time=before.end_time)
    model_uri = f"runs:/{run_id}/{ARTIFACT}"
    registered = None
    if register:
        # By the logged model's own id: MLflow 3 stores it outside the run's artifact folder.
        version = mlflow.register_model(f"models:/{info.model_id}", register)
        registered = f"models:/{register}/{version.version}"
    return LoggedModel(run_id, strategy, model_uri, registered)
