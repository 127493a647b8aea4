"""Load a logged HydraNet and predict every task for image files."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtlbench.predict.card import ModelCard
from mtlbench.predict.images import load_images

CARD_KEY = "mtlbench"  # the model's MLflow metadata entry holding its ModelCard
ARTIFACT = "model"  # the name each trial logs its model under
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class PredictError(Exception):
    """A problem with the user's model or inputs, reported as one line (exit code 2)."""


@dataclass(frozen=True)
class Prediction:
    path: Path
    tasks: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Predictions:
    card: ModelCard
    rows: tuple[Prediction, ...]
    unreadable: tuple[tuple[Path, str], ...]


def model_uri(text: str) -> str:
    """A run id, ``runs:/ID/PATH`` or ``models:/NAME/VERSION|@ALIAS|m-ID`` -> an MLflow URI."""
    if text.startswith(("runs:/", "models:/")):
        return text
    if _RUN_ID.match(text):
        return f"runs:/{text}/{ARTIFACT}"
    raise PredictError(
        f"--model {text!r} is not a run id (32 hex digits), runs:/ID/{ARTIFACT} "
        "or models:/NAME/VERSION"
    )


def load(uri: str, tracking_uri: str) -> tuple[Any, ModelCard]:
    import mlflow
    import mlflow.pytorch
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri)
    try:
        info = mlflow.models.get_model_info(uri)
        model = mlflow.pytorch.load_model(uri, map_location="cpu")
    except (MlflowException, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PredictError(f"no model at {uri} in {tracking_uri}: {first}") from err
    raw = (info.metadata or {}).get(CARD_KEY)
    if raw is None:
        raise PredictError(f"{uri} was not logged by mtlbench (its metadata has no model card)")
    try:
        card = ModelCard.from_dict(raw)
    except ValueError as err:
        raise PredictError(f"{uri}: {err}") from err
    model.eval()
    return model, card


def predict(
    inputs: Iterable[str | Path],
    model: str,
    tracking_uri: str,
    batch_size: int = 256,
) -> Predictions:
    import torch

    from mtlbench.predict.exported import decode_outputs

    network, card = load(model_uri(model), tracking_uri)
    batch = load_images(inputs, card.image_size, card.channels)
    outputs: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(batch.paths), batch_size):
            chunk = torch.from_numpy(batch.pixels[start : start + batch_size])
            outputs.append(network(chunk).cpu().numpy())
    raw = np.concatenate(outputs) if outputs else np.zeros((0, card.n_outputs), np.float32)
    rows = tuple(
        Prediction(path, tasks)
        for path, tasks in zip(batch.paths, decode_outputs(card, raw), strict=True)
    )
    return Predictions(card, rows, batch.unreadable)
