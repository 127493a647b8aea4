"""Frozen configuration objects, TOML loading and validation.

Nothing here imports torch or mlflow: the CLI builds and validates a configuration before
paying for those imports. A TOML file has one table per dataclass (``[data]``, ``[model]``,
``[train]``, ``[search]``, ``[tracking]``) plus an optional top-level ``output``; an unknown
table or key is an error that names it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from mtlbench.infra.errors import UserError

BACKBONES: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "mobilenet_v3_small",
    "tiny",
    "lenet",  # one-channel images only (multi-digits)
)
OPTIMIZERS: tuple[str, ...] = ("adamw", "sgd")
SEARCHES: tuple[str, ...] = ("grid", "optuna")
OBJECTIVES: tuple[str, ...] = ("auto", "score", "delta_m", "pareto")
PRUNERS: tuple[str, ...] = ("median", "none")
DEFAULT_STRATEGIES: tuple[str, ...] = ("sum", "uncertainty", "dwa")
# ``lrs = "auto"`` starts from this coarse grid (steps of ~3x) and widens it at the edges
# (mtlbench/runs/lr_auto.py).
AUTO_LRS: tuple[float, ...] = (1e-3, 3e-4, 1e-4)


class ConfigError(UserError, ValueError):
    """A configuration value a user gave is invalid; the message names it and the valid choices."""


def _choice(what: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {what} {value!r}; valid choices: {', '.join(valid)}")


def _positive(what: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ConfigError(f"{what} must be a positive number, got {value!r}")


def default_cache_dir() -> Path:
    env = os.environ.get("MTLBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mtlbench"


@dataclass(frozen=True)
class DataConfig:
    source: str | None = None  # what the dataset plug-in loads (UTKFace: folder or archive)
    image_size: int = 32
    max_samples: int | None = None
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    cache_dir: str | None = None
    augment: bool = True
    dataset: str = "utkface"  # a registered dataset plug-in (``mtlbench datasets``)

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"dataset must be a registered dataset name, got {self.dataset!r}")
        if self.source == "synthetic":
            object.__setattr__(self, "source", None)
        if not isinstance(self.image_size, int) or self.image_size < 16:
            raise ConfigError(f"image_size must be an integer >= 16, got {self.image_size!r}")
        if self.max_samples is not None and (
            not isinstance(self.max_samples, int) or self.max_samples < 10
        ):
            raise ConfigError(f"max_samples must be an integer >= 10, got {self.max_samples!r}")
        split = tuple(float(f) for f in self.split)
        if len(split) != 3 or any(f <= 0 for f in split) or abs(sum(split) - 1) > 1e-6:
            raise ConfigError(
                f"split must be three positive fractions summing to 1, got {self.split!r}"
            )
        object.__setattr__(self, "split", split)

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet18"
    weights: str = "none"  # none | imagenet | path to a state_dict file
    head_hidden: int = 512

    def __post_init__(self) -> None:
        _choice("backbone", self.backbone, BACKBONES)
        if self.weights not in ("none", "imagenet") and not Path(self.weights).is_file():
            raise ConfigError(
                f"--weights {self.weights!r} is neither 'none', 'imagenet' nor an existing file"
            )
        if not isinstance(self.head_hidden, int) or self.head_hidden < 1:
            raise ConfigError(f"head_hidden must be a positive integer, got {self.head_hidden!r}")


@dataclass(frozen=True)
class TrainConfig:
    # 6 epochs keep the README's first run under 4 minutes on a slow 2-core host
    # (docs/performance.md) while it still clearly beats the constant predictor.
    epochs: int = 6
    batch_size: int = 64
    eval_batch_size: int = 256
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    momentum: float = 0.9  # SGD only
    device: str = "auto"  # auto | cpu | cuda | cuda:<i>
    channels_last: str = "auto"  # auto (on for CUDA; off on CPU, measured slower) | on | off
    amp: str = "auto"  # auto (bf16 on CUDA, off on CPU) | bf16 | off
    # Per-trial folders <dir>/<mlflow run id>/; None: next to a SQLite store, else ./
    checkpoint_dir: str | None = None
    compile: bool = False  # torch.compile the backbone (worth it on GPU for long runs)
    keep_checkpoints: bool = False  # keep them after a trial ends (else deleted)
    # Stop a trial after this many epochs without a better validation score (0: never).
    patience: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ConfigError(f"patience must be an integer >= 0, got {self.patience!r}")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("amp mode", self.amp, ("auto", "bf16", "off"))
        _choice("channels_last mode", self.channels_last, ("auto", "on", "off"))
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ConfigError(
                f"unknown device {dev!r}; valid choices: auto, cpu, cuda, cuda:<index>"
            )


@dataclass(frozen=True)
class SearchConfig:
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    lrs: tuple[float, ...] = (1e-3,)
    # True for ``lrs = "auto"`` (``--lrs auto``): ``lrs`` is then the starting grid
    # :data:`AUTO_LRS`, widened by the grid run until every chosen lr is interior (capped).
    lrs_auto: bool = False
    seeds: tuple[int, ...] = (0,)
    strategy_params: tuple[str, ...] = ()  # "dwa.temperature=2" items
    scalarization_sweep: int = 0  # K > 0 adds static:w for every w on the simplex grid 1/K
    # N > 0 adds the interior simplex lattice 1/N (every weight > 0, see
    # verdict_stats.interior_simplex); its best point on validation is the "best static" row.
    static_sweep: int = 0
    search: str = "grid"
    n_trials: int = 20
    storage: str | None = None
    study_name: str | None = None
    # Optuna (issue 4): see mtlbench/study.py and the README's multi-machine section.
    lr_range: tuple[float, float] = (1e-4, 1e-2)  # log-uniform learning-rate range
    objective: str = "auto"  # auto (val delta-m once baselines exist, else val score) | ...
    pruner: str = "median"  # median | none
    prune_startup_trials: int = 5  # finished trials before the median pruner may prune
    prune_warmup_epochs: int = 1  # epochs of a trial before it may be pruned
    sampler_seed: int = 0
    workers: int = 1  # local worker processes
    devices: tuple[str, ...] = ()  # CUDA indices, one worker each ("0", "1" ...)
    heartbeat_s: int = 60  # a trial without heartbeat for 2x this is failed and retried
    max_retry: int = 3  # retries of a trial whose worker died

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategies", tuple(self.strategies))
        if self.lrs == "auto" or tuple(self.lrs) == ("auto",):
            object.__setattr__(self, "lrs", AUTO_LRS)
            object.__setattr__(self, "lrs_auto", True)
        if isinstance(self.lrs, str):
            raise ConfigError(f"lrs must be a list of learning rates or 'auto', got {self.lrs!r}")
        object.__setattr__(self, "lrs", tuple(float(lr) for lr in self.lrs))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "strategy_params", tuple(self.strategy_params))
        if not self.strategies:
            raise ConfigError("at least one strategy is needed")
        if not self.lrs:
            raise ConfigError("at least one learning rate is needed")
        for lr in self.lrs:
            _positive("learning rate", lr)
        if not self.seeds:
            raise ConfigError("at least one seed is needed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct, got {self.seeds!r}")
        _choice("search", self.search, SEARCHES)
        if self.lrs_auto and self.search != "grid":
            raise ConfigError("lrs = 'auto' widens a grid; Optuna searches lr_range instead")
        if not isinstance(self.scalarization_sweep, int) or not 0 <= self.scalarization_sweep <= 20:
            raise ConfigError(
                f"scalarization_sweep must be an integer from 0 (off) to 20, "
                f"got {self.scalarization_sweep!r}"
            )
        if (
            not isinstance(self.static_sweep, int)
            or isinstance(self.static_sweep, bool)
            or not (self.static_sweep == 0 or 2 <= self.static_sweep <= 30)
        ):
            raise ConfigError(
                f"static_sweep must be 0 (off) or an integer from 2 to 30 (lattice divisions; "
                f"the number of tasks or more gives interior points), got {self.static_sweep!r}"
            )
        if not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise ConfigError(f"n_trials must be a positive integer, got {self.n_trials!r}")
        self._check_optuna()
        for item in self.strategy_params:
            if "=" not in item or "." not in item.split("=", 1)[0]:
                raise ConfigError(
                    f"strategy parameter {item!r} must look like <strategy>.<name>=<value>, "
                    "e.g. dwa.temperature=2"
                )

    def _check_optuna(self) -> None:
        try:
            lr_range = tuple(float(v) for v in self.lr_range)
        except (TypeError, ValueError):
            lr_range = ()
        if len(lr_range) != 2 or not 0 < lr_range[0] < lr_range[1] or lr_range[1] > 10:
            raise ConfigError(
                f"lr_range must be two learning rates low < high in (0, 10], got {self.lr_range!r}"
            )
        object.__setattr__(self, "lr_range", lr_range)
        object.__setattr__(self, "devices", tuple(str(d).strip() for d in self.devices))
        _choice("objective", self.objective, OBJECTIVES)
        _choice("pruner", self.pruner, PRUNERS)
        for name, low in (
            ("prune_startup_trials", 0),
            ("prune_warmup_epochs", 0),
            ("sampler_seed", 0),
            ("workers", 1),
            ("heartbeat_s", 1),
            ("max_retry", 0),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        for d in self.devices:
            if not d.isdigit():
                raise ConfigError(
                    f"devices takes CUDA indices such as 0,1; got {d!r} in {self.devices!r}"
                )


SYSTEM_METRICS = ("auto", "on", "off")
LOG_MODEL = ("best", "all", "none")


@dataclass(frozen=True)
class TrackingConfig:
    experiment: str = "mtlbench"
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    system_metrics: str = "auto"  # auto (on for CUDA runs) | on | off
    log_model: str = "best"  # best (each strategy's best trial) | all | none
    register_model: str | None = None  # registered-model name for the overall winner

    def __post_init__(self) -> None:
        if not self.experiment.strip():
            raise ConfigError("experiment name must not be empty")
        if self.system_metrics not in SYSTEM_METRICS:
            raise ConfigError(
                f"system_metrics {self.system_metrics!r} is not one of {', '.join(SYSTEM_METRICS)}"
            )
        if self.log_model not in LOG_MODEL:
            raise ConfigError(f"log_model {self.log_model!r} is not one of {', '.join(LOG_MODEL)}")
        if self.register_model is not None and self.log_model == "none":
            raise ConfigError("--register-model needs a logged model: drop --log-model none")

    @property
    def resolved_uri(self) -> str:
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    output: str | None = None  # None: results/<experiment>

    @property
    def output_dir(self) -> Path:
        return Path(self.output) if self.output else Path("results") / self.tracking.experiment

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "search": SearchConfig,
    "tracking": TrackingConfig,
}


def _build(cls: type, section: str, values: Mapping[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(
                f"unknown key {key!r} in [{section}]; valid keys: {', '.join(sorted(known))}"
            )
    try:
        return cls(**values)
    except TypeError as exc:  # a value of the wrong type reaching a comparison
        raise ConfigError(f"invalid value in [{section}]: {exc}") from exc


def config_from_dict(raw: Mapping[str, Any]) -> RunConfig:
    sections: dict[str, Any] = {}
    output = None
    for key, value in raw.items():
        if key == "output":
            output = str(value)
        elif key in _SECTIONS:
            if not isinstance(value, Mapping):
                raise ConfigError(f"[{key}] must be a table")
            sections[key] = _build(_SECTIONS[key], key, value)
        else:
            valid = ", ".join([*_SECTIONS, "output"])
            raise ConfigError(f"unknown config section {key!r}; valid sections: {valid}")
    return RunConfig(**sections, output=output)


def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of a TOML study definition, as written (data only, never executed)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from exc


def load_config(path: str | Path) -> RunConfig:
    """Read a TOML study definition (data only, never executed)."""
    return config_from_dict(read_toml(path))


def override(cfg: RunConfig, section: str, **changes: Any) -> RunConfig:
    """Return ``cfg`` with the non-None ``changes`` applied to one section (CLI flags win)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return cfg
    if section == "root":
        return dataclasses.replace(cfg, **changes)
    current = getattr(cfg, section)
    return dataclasses.replace(cfg, **{section: dataclasses.replace(current, **changes)})


def simplex_weights(k: int, n_tasks: int = 3) -> list[tuple[int, ...]]:
    """Weight vectors on the simplex grid with step 1/k, scaled to sum to ``n_tasks`` (like
    ``sum``'s weights, so learning rates stay comparable), vertices excluded (those are the
    single-task baselines, ``stl``). Values are rounded to 4 decimals."""
    points: list[tuple[int, ...]] = []

    def rec(prefix: tuple[int, ...], left: int) -> None:
        if len(prefix) == n_tasks - 1:
            points.append((*prefix, left))
            return
        for i in range(left, -1, -1):
            rec((*prefix, i), left - i)

    rec((), k)
    return [p for p in points if max(p) < k]


def sweep_specs(k: int, n_tasks: int = 3) -> list[str]:
    """``static:`` specs of :func:`simplex_weights`."""
    specs = []
    for p in simplex_weights(k, n_tasks):
        values = [round(n_tasks * v / k, 4) for v in p]
        specs.append("static:" + ",".join(f"{v:g}" for v in values))
    return specs
