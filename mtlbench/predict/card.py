"""What a logged model predicts and how its inputs were prepared: stored with the model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("regression", "binary", "multiclass", "multilabel")


@dataclass(frozen=True)
class TaskCard:
    """One head: its name, kind, width and, for classifiers, the name of each class."""

    name: str
    kind: str
    n_outputs: int
    labels: tuple[str, ...] = ()
    unit: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: unknown kind {self.kind!r}; valid: {KINDS}")
        if self.n_outputs < 1:
            raise ValueError(f"task {self.name!r}: n_outputs must be >= 1, got {self.n_outputs}")
        wanted = 2 if self.kind == "binary" else self.n_outputs
        if self.labels and self.kind != "regression" and len(self.labels) != wanted:
            raise ValueError(f"task {self.name!r}: {len(self.labels)} labels for {wanted} classes")


@dataclass(frozen=True)
class ModelCard:
    """Everything `mtlbench predict` needs besides the weights."""

    dataset: str
    tasks: tuple[TaskCard, ...]
    image_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("a model card needs at least one task")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean/std need {self.channels} values each, got {self.mean} and {self.std}"
            )

    @property
    def n_outputs(self) -> int:
        return sum(t.n_outputs for t in self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelCard:
        try:
            tasks = tuple(
                TaskCard(
                    name=str(t["name"]),
                    kind=str(t["kind"]),
                    n_outputs=int(t["n_outputs"]),
                    labels=tuple(str(x) for x in t.get("labels", ())),
                    unit=str(t.get("unit", "")),
                )
                for t in raw["tasks"]
            )
            return cls(
                dataset=str(raw["dataset"]),
                tasks=tasks,
                image_size=int(raw["image_size"]),
                channels=int(raw["channels"]),
                mean=tuple(float(x) for x in raw["mean"]),
                std=tuple(float(x) for x in raw["std"]),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"not an mtlbench model card (missing or bad field {err})") from err
