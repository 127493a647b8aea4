"""Everything a set of trials shares: the device, the dataset's decoded data, its split and
its tasks' constant-predictor reference.

Prepared once per ``run`` (decode once, split once) and handed to every trial, so every
strategy, learning rate and seed sees exactly the same images in the same split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from mtlbench.config import ConfigError, DataConfig, TrainConfig
from mtlbench.data import registry, split_indices, subsample
from mtlbench.data.batches import to_tensors
from mtlbench.data.plugin import LoadedData
from mtlbench.infra.progress import NullReporter, Reporter
from mtlbench.mtl.tasks import UTKFACE_TASKS, TaskSet

SPLIT_NAMES = ("train", "val", "test")


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {spec} asked for CUDA, but no CUDA device is available")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
    return torch.device(spec)


@dataclass(frozen=True)
class Reference:
    """Each task's best constant predictor, fitted on the training split: its prediction (the
    median, the majority class) and its error in the task's metric. It normalises the
    model-selection score and starts a regression head at its value; the same predictor
    measured on test (``PreparedData.constant_test``) is the leaderboard's "constant
    predictor" row."""

    tasks: TaskSet
    predictions: tuple[float, ...]  # per task; NaN where no single number (multilabel)
    errors: tuple[float, ...]  # per task, as an error (lower is better), floored at 1e-6

    @staticmethod
    def from_labels(labels: np.ndarray, tasks: TaskSet = UTKFACE_TASKS) -> Reference:
        fitted = [t.constant_predictor(labels) for t in tasks]
        return Reference(tasks, tuple(p for p, _ in fitted), tuple(e for _, e in fitted))

    def prediction(self, name: str) -> float:
        return self.predictions[self.tasks.names.index(name)]

    def error(self, name: str) -> float:
        return self.errors[self.tasks.names.index(name)]

    def metrics(self) -> dict[str, float]:
        """The constant predictor's value of each task metric (``age_mae``, ``gender_acc`` ...)."""
        return {
            t.metric: (1.0 - e if t.higher_is_better else e)
            for t, e in zip(self.tasks, self.errors, strict=True)
        }

    def initial_outputs(self) -> dict[int, float]:
        """Head index -> the output a regression head starts at (its constant predictor)."""
        return {
            i: p
            for i, (t, p) in enumerate(zip(self.tasks, self.predictions, strict=True))
            if t.kind == "regression"
        }

    def relative_errors(self, metrics: dict[str, float]) -> dict[str, float]:
        """Per task: error / constant-predictor error (1 = trivial, 0 = perfect)."""
        return {
            t.name: t.error(metrics[t.metric]) / e
            for t, e in zip(self.tasks, self.errors, strict=True)
        }

    def score(self, metrics: dict[str, float], tasks: Sequence[str] | None = None) -> float:
        """Mean relative error over ``tasks`` (default: all): the model-selection score."""
        errors = self.relative_errors(metrics)
        names = list(tasks) if tasks is not None else list(errors)
        return sum(errors[name] for name in names) / len(names)


@dataclass(frozen=True)
class PreparedData:
    train: tuple[torch.Tensor, torch.Tensor]  # uint8 NCHW images, [N, columns] labels
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    reference: Reference
    params: dict[str, str]  # dataset, data, data_sha256, split_sha256, n_train, n_val, ...
    summary: str
    synthetic: bool
    tasks: TaskSet = UTKFACE_TASKS
    flip: bool = True  # horizontal flips keep the labels (False for left/right tasks)
    # Per task metric: the constant predictor fitted on train, measured on test.
    constant_test: dict[str, float] = field(default_factory=dict)


def _split_parts(data: LoadedData, cfg: DataConfig) -> tuple[dict[str, np.ndarray], str]:
    """Index arrays of train / val / test and the split's sha256: the plug-in's own split
    when it has one, else a split stratified by its strata (``--max-samples`` subsamples
    first, stratified the same way)."""
    indices = np.arange(len(data.labels))
    if cfg.max_samples is not None and cfg.max_samples < len(indices):
        indices = subsample(data.strata, cfg.max_samples, seed=cfg.split_seed)
    if data.split is not None:
        parts = {n: indices[data.split[indices] == k] for k, n in enumerate(SPLIT_NAMES)}
        digest = hashlib.sha256(b"fixed")
        for part in parts.values():
            digest.update(len(part).to_bytes(8, "little") + part.astype("<i8").tobytes())
        return parts, digest.hexdigest()
    split = split_indices(data.strata[indices], cfg.split, seed=cfg.split_seed)
    return {n: indices[getattr(split, n)] for n in SPLIT_NAMES}, split.sha256


def prepare_data(
    cfg: DataConfig, device: torch.device, reporter: Reporter | None = None
) -> PreparedData:
    reporter = reporter or NullReporter()
    plugin = registry.get(cfg.dataset)
    data = registry.load(
        plugin, cfg.source, cfg.image_size, cache_dir=cfg.cache_path, reporter=reporter
    )
    if data.note:
        reporter.info(data.note)
    reporter.info(data.summary)
    parts, split_sha256 = _split_parts(data, cfg)
    tensors = {name: to_tensors(data, idx, device) for name, idx in parts.items()}
    params = {
        "dataset": plugin.name,
        "data": data.source,
        "data_sha256": data.sha256,
        "split_sha256": split_sha256,
        "split": ",".join(f"{f:g}" for f in cfg.split),
        "split_seed": str(cfg.split_seed),
        "n_train": str(len(parts["train"])),
        "n_val": str(len(parts["val"])),
        "n_test": str(len(parts["test"])),
        "n_skipped": str(data.n_skipped),
        "max_samples": str(cfg.max_samples) if cfg.max_samples else "all",
        "image_size": str(cfg.image_size),
        "channels": str(data.channels),
        "augment": str(cfg.augment),
    }
    train_labels, test_labels = data.labels[parts["train"]], data.labels[parts["test"]]
    return PreparedData(
        train=tensors["train"],
        val=tensors["val"],
        test=tensors["test"],
        reference=Reference.from_labels(train_labels, plugin.tasks),
        params=params,
        summary=data.summary,
        synthetic=data.synthetic,
        tasks=plugin.tasks,
        flip=plugin.flip_preserves_labels,
        constant_test={
            t.metric: t.constant_metric(train_labels, test_labels) for t in plugin.tasks
        },
    )


def resolve_amp(train: TrainConfig, device: torch.device) -> torch.dtype | None:
    if train.amp == "off" or (train.amp == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def resolve_channels_last(train: TrainConfig, device: torch.device) -> bool:
    # Measured on a 2-core CPU (ResNet18, 32 px, batch 64): 870 img/s contiguous against
    # 716 img/s channels_last; on CUDA channels_last is the fast layout for convolutions.
    if train.channels_last == "auto":
        return device.type == "cuda"
    return train.channels_last == "on"
