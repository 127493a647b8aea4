"""What an Optuna study searches and what it optimises.

Search space: the strategy (categorical over the run's strategies), the learning rate
(log-uniform over ``search.lr_range``), the seed (categorical over ``search.seeds``) and, for
the sampled strategy only, each of its declared ``searchable`` hyperparameters, named
``<strategy>.<name>`` (a value fixed with ``--strategy-param`` is not searched).

Objective (chosen once, when the study is created, and stored with it so every worker and every
resume optimises the same thing):

* ``val_delta_m``: delta-m of the validation metrics against single-task validation baselines
  (``stl:<task>`` trials of the same data, split, image size, backbone and epochs already in the
  experiment); lower is better. ``--objective auto`` picks it when all three baselines exist.
* ``val_score``: the model-selection score (mean over tasks of error / constant-predictor
  error); lower is better. ``auto`` falls back to it.
* ``pareto``: three objectives, validation age MAE (min), gender and race accuracy (max), with
  NSGA-II; no pruning (Optuna's pruners are single-objective).

Values are taken at the trial's best validation epoch (by ``val_score``, as in the grid).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mtlbench import weighting
from mtlbench.config import ConfigError, RunConfig
from mtlbench.mtl.tasks import UTKFACE_TASKS, TaskSet
from mtlbench.training.fit import TrialSpec
from mtlbench.weighting.base import HyperParam
from mtlbench.weighting.registry import split_spec

if TYPE_CHECKING:
    import optuna
    import pandas as pd

PARETO_METRICS: tuple[str, ...] = tuple(t.metric for t in UTKFACE_TASKS)  # age_mae, ...


@dataclass(frozen=True)
class Objective:
    kind: str  # val_score | val_delta_m | pareto
    baselines: Mapping[str, float] = dataclasses.field(default_factory=dict)  # by task name
    tasks: TaskSet = UTKFACE_TASKS  # the dataset's: Pareto metrics and delta-m derive from them

    @property
    def names(self) -> tuple[str, ...]:
        if self.kind == "pareto":
            return tuple(f"val_{t.metric}" for t in self.tasks)
        return (self.kind,)

    @property
    def directions(self) -> list[Literal["minimize", "maximize"]]:
        if self.kind == "pareto":
            return ["maximize" if t.higher_is_better else "minimize" for t in self.tasks]
        return ["minimize"]

    @property
    def prunable(self) -> bool:
        return self.kind != "pareto"

    def values(self, val: Mapping[str, float]) -> list[float]:
        """Objective value(s) of one set of validation metrics (keys as in ``train.evaluate``)."""
        if self.kind == "pareto":
            return [float(val[t.metric]) for t in self.tasks]
        if self.kind == "val_delta_m":
            from mtlbench.report.tables import delta_m

            metrics = {t.name: float(val[t.metric]) for t in self.tasks}
            return [delta_m(metrics, dict(self.baselines), self.tasks)]
        return [float(val["score"])]

    def to_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {"kind": self.kind, "baselines": dict(self.baselines)}
        if self.tasks != UTKFACE_TASKS:  # studies made before plug-ins keep their attrs
            attrs["tasks"] = self.tasks.to_json()
        return attrs

    @staticmethod
    def from_attrs(attrs: Mapping[str, Any]) -> Objective:
        spec = attrs.get("tasks")
        tasks = TaskSet.from_json(str(spec)) if spec else UTKFACE_TASKS
        return Objective(str(attrs["kind"]), dict(attrs.get("baselines") or {}), tasks)


def validation_baselines(
    tidy: pd.DataFrame, group: Mapping[str, str], tasks: TaskSet = UTKFACE_TASKS
) -> dict[str, float] | None:
    """B_t from ``best_val/<metric>`` of finished single-task trials in ``group`` (the lr of
    each task chosen on that same metric, mean over seeds); None unless all tasks have one."""
    from mtlbench.report.tables import GROUP_PARAMS

    if tidy.empty:
        return None
    mask = (tidy["status"] == "finished") & ~tidy["tasks"].str.contains(",", na=True)
    for key in GROUP_PARAMS:
        mask &= tidy[key].astype(str) == str(group[key])
    single = tidy[mask]
    out: dict[str, float] = {}
    for task in tasks:
        col = f"best_val/{task.metric}"
        mine = single[single["tasks"] == task.name].dropna(subset=[col])
        if mine.empty:
            return None
        by_lr = mine.groupby("lr")[col].mean()
        value = float(by_lr.max() if task.higher_is_better else by_lr.min())
        if not value > 0:  # delta-m divides by B_t
            return None
        out[task.name] = value
    return out


def choose_objective(
    requested: str, baselines: Mapping[str, float] | None, tasks: TaskSet = UTKFACE_TASKS
) -> Objective:
    """``requested`` is the config's ``objective`` (auto | score | delta_m | pareto)."""
    if requested == "pareto":
        return Objective("pareto", tasks=tasks)
    if requested == "delta_m" and baselines is None:
        stl = ", ".join(f"stl:{n}" for n in tasks.names[:-1]) + f" and stl:{tasks.names[-1]}"
        raise ConfigError(
            f"--objective delta_m needs single-task validation baselines (finished {stl} "
            "trials with the same data, split, image size, backbone and "
            "epochs in this experiment): run `mtlbench run --strategies stl ...` first, or use "
            "--objective auto|score|pareto"
        )
    if requested in ("auto", "delta_m") and baselines is not None:
        return Objective("val_delta_m", dict(baselines), tasks)
    return Objective("val_score", tasks=tasks)


def check_strategies(cfg: RunConfig) -> None:
    """Refuse what an Optuna search cannot mean (single-task specs, the fixed-weight sweep)."""
    for spec in cfg.search.strategies:
        if split_spec(spec)[0] == "stl":
            raise ConfigError(
                f"strategy {spec!r} trains one task: single-task baselines come from a grid run "
                "(`mtlbench run --strategies stl`), not from an Optuna study"
            )
    if cfg.search.scalarization_sweep:
        raise ConfigError("--scalarization-sweep is a grid feature; use --search grid for it")
    if cfg.search.static_sweep:
        raise ConfigError("--static-sweep is a grid feature; use --search grid for it")


def searchable(cls_name: str, fixed: Sequence[str]) -> list[HyperParam]:
    """Hyperparameters of a strategy that the study samples (declared searchable, with a range
    or choices, not positional, not fixed by --strategy-param)."""
    fixed_names = {item.partition("=")[0].strip() for item in fixed}
    out = []
    for h in weighting.get(cls_name).hparams:
        if not h.searchable or h.positional or f"{cls_name}.{h.name}" in fixed_names:
            continue
        if h.kind in ("float", "int") and (h.low is None or h.high is None):
            continue
        if h.kind == "str" and not h.choices:
            continue
        if h.kind == "floats":
            continue
        out.append(h)
    return out


def suggest(trial: optuna.Trial, cfg: RunConfig) -> tuple[TrialSpec, tuple[str, ...]]:
    """Sample one trial: its spec and the ``--strategy-param`` items of the sampled
    hyperparameters (full precision, so the trained value is the sampled one)."""
    s = cfg.search
    strategy = str(trial.suggest_categorical("strategy", list(s.strategies)))
    lr = trial.suggest_float("lr", s.lr_range[0], s.lr_range[1], log=True)
    seed = int(trial.suggest_categorical("seed", list(s.seeds)))
    name = split_spec(strategy)[0]
    items: list[str] = []
    for h in searchable(name, s.strategy_params):
        key = f"{name}.{h.name}"
        value: Any
        if h.kind == "float":
            assert h.low is not None and h.high is not None
            low = h.low if not h.log else max(h.low, 1e-12)
            value = trial.suggest_float(key, low, h.high, log=h.log)
        elif h.kind == "int":
            assert h.low is not None and h.high is not None
            value = trial.suggest_int(key, int(h.low), int(h.high), log=h.log)
        else:
            value = trial.suggest_categorical(key, list(h.choices or ()))
        items.append(f"{key}={value!r}" if isinstance(value, float) else f"{key}={value}")
    return TrialSpec(strategy, lr, seed), tuple(items)


def with_params(cfg: RunConfig, items: Sequence[str]) -> RunConfig:
    """``cfg`` whose ``strategy_params`` also hold the sampled items (fit and trial_params read
    them from there)."""
    if not items:
        return cfg
    search = dataclasses.replace(cfg.search, strategy_params=(*cfg.search.strategy_params, *items))
    return dataclasses.replace(cfg, search=search)
