"""The HydraNet as it is saved for use: pixels in, every head's raw output out.

Saving the bare training network would leave the input normalisation to every caller. The
exported module takes uint8 images ``[B, C, S, S]`` exactly as decoded, normalises them with
the training statistics (buffers, so they travel with the weights) and returns the heads'
outputs side by side, ``[B, sum of n_outputs]``: one plain tensor, which MLflow's PyTorch
flavour and its signatures handle for any number of tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mtlbench.predict.card import ModelCard, TaskCard


class ExportedHydraNet(nn.Module):
    mean: torch.Tensor  # buffer [1, C, 1, 1]
    std: torch.Tensor  # buffer [1, C, 1, 1]

    def __init__(self, network: nn.Module, card: ModelCard) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(card.mean).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(card.std).view(1, -1, 1, 1) * 255.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) / self.std
        out = self.network(x)
        # HydraNet returns (features, head outputs); accept a bare tuple of heads as well.
        heads = getattr(out, "outputs", out)
        return torch.cat([h.float().reshape(h.shape[0], -1) for h in heads], dim=1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return np.asarray(e / e.sum())


def _label(task: TaskCard, index: int) -> str:
    return task.labels[index] if task.labels else str(index)


def _decode_task(task: TaskCard, raw: np.ndarray) -> dict[str, Any]:
    """One head's raw output for one image -> a readable prediction and its confidence."""
    if task.kind == "regression":
        value = float(raw[0]) if raw.size == 1 else [float(v) for v in raw]
        return {"value": value}
    if task.kind == "binary":
        p = float(_sigmoid(raw[:1])[0])
        return {"value": _label(task, int(p > 0.5)), "p": p if p > 0.5 else 1.0 - p}
    if task.kind == "multiclass":
        probs = _softmax(raw)
        best = int(probs.argmax())
        return {"value": _label(task, best), "p": float(probs[best])}
    probs = _sigmoid(raw)
    return {
        "value": [_label(task, int(i)) for i in np.flatnonzero(probs > 0.5)],
        "p": probs.tolist(),
    }


def decode_outputs(card: ModelCard, raw: np.ndarray) -> list[dict[str, dict[str, Any]]]:
    """``raw`` ``[N, sum n_outputs]`` -> per image, per task name, ``{"value", "p"?}``."""
    if raw.ndim != 2 or raw.shape[1] != card.n_outputs:
        raise ValueError(
            f"model output has shape {raw.shape}; the card's tasks need [N, {card.n_outputs}]"
        )
    bounds: list[tuple[TaskCard, int, int]] = []
    start = 0
    for task in card.tasks:
        bounds.append((task, start, start + task.n_outputs))
        start += task.n_outputs
    return [{t.name: _decode_task(t, row[a:b]) for t, a, b in bounds} for row in raw]


def task_cards(
    tasks: Sequence[Any], labels: dict[str, Sequence[str]] | None = None
) -> tuple[TaskCard, ...]:
    """Cards for tasks that carry ``name``, ``kind``, ``n_outputs`` (and optionally ``labels``,
    ``unit``); ``labels`` overrides per task name."""
    labels = labels or {}
    return tuple(
        TaskCard(
            name=t.name,
            kind=t.kind,
            n_outputs=t.n_outputs,
            labels=tuple(labels.get(t.name, getattr(t, "labels", ()) or ())),
            unit=str(getattr(t, "unit", "") or ""),
        )
        for t in tasks
    )
