"""What every study shares, grid or Optuna: its definition and fingerprint, its parent run's
params, its outcome, and the report written at its end."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtlbench import weighting
from mtlbench.config import RunConfig

if TYPE_CHECKING:
    import pandas as pd

    from mtlbench.tracking import TrackedRun
    from mtlbench.training.fit import TrialResult

# The search settings that decide what a study's trials compute, per kind of search.
DEFINING_SEARCH_KEYS: dict[str, tuple[str, ...]] = {
    "grid": ("strategies", "lrs", "seeds", "strategy_params", "scalarization_sweep"),
    "optuna": ("strategies", "seeds", "strategy_params", "lr_range", "objective"),
}
OPTIONAL_GRID_KEYS: tuple[str, ...] = ("static_sweep", "lrs_auto")
# Where or how fast a study runs: changing these continues the same study.
EXECUTION_KEYS: dict[str, tuple[str, ...]] = {
    "data": ("source", "cache_dir"),
    "train": ("device", "eval_batch_size", "checkpoint_dir", "keep_checkpoints"),
}


@dataclass(frozen=True)
class StudyOutcome:
    parent_run_id: str
    results: list[TrialResult]
    summary: pd.DataFrame
    files: list[Path]
    seconds: float
    failed: tuple[str, ...] = ()  # labels of trials that raised an error (see their runs)


def validate_strategies(cfg: RunConfig) -> None:
    """Fail before any work if a strategy spec or --strategy-param is invalid."""
    from mtlbench.weighting.registry import check_overrides

    for spec in cfg.search.strategies:
        weighting.resolve(spec, cfg.search.strategy_params)
    check_overrides(cfg.search.strategies, cfg.search.strategy_params)


def study_definition(cfg: RunConfig, data_params: dict[str, str]) -> dict[str, Any]:
    """Everything that decides what a trial of the study computes (not where or how fast it
    runs, nor N): a re-run continues the study only if this is unchanged.

    The data enter by content (``data_sha256``, ``split_sha256``), never by path, so moving the
    data folder continues the same study."""
    d = cfg.to_dict()
    data = {k: v for k, v in d["data"].items() if k not in EXECUTION_KEYS["data"]}
    if data.get("dataset") == "utkface":
        del data["dataset"]  # the default, absent from older studies: they keep resuming
    train = {k: v for k, v in d["train"].items() if k not in EXECUTION_KEYS["train"]}
    search = {k: d["search"][k] for k in DEFINING_SEARCH_KEYS[cfg.search.search]}
    # Keys added later enter only when set, so earlier studies keep their fingerprint.
    search |= {k: d["search"][k] for k in OPTIONAL_GRID_KEYS if cfg.search.search == "grid"}
    search = {k: v for k, v in search.items() if k not in OPTIONAL_GRID_KEYS or v}
    definition = {
        "data": data,
        "data_sha256": data_params["data_sha256"],
        "split_sha256": data_params["split_sha256"],
        "model": d["model"],
        "train": train,
        "search": search,
        "experiment": cfg.tracking.experiment,
    }
    return json.loads(json.dumps(definition, default=str))


def fingerprint(definition: dict[str, Any], length: int = 20) -> str:
    """Hex digest of a study definition (the first ``length`` characters)."""
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:length]


def differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key old -> new`` for every leaf where two definitions differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')} {old!r} -> {new!r}"]


def study_params(cfg: RunConfig, data_params: dict[str, str]) -> dict[str, str]:
    s, t, m = cfg.search, cfg.train, cfg.model
    return {
        "search": s.search,
        "strategies": ",".join(s.strategies),
        "lrs": "auto from " + ",".join(f"{lr:g}" for lr in s.lrs)
        if s.lrs_auto
        else ",".join(f"{lr:g}" for lr in s.lrs),
        "seeds": ",".join(str(x) for x in s.seeds),
        "strategy_params": ";".join(s.strategy_params) or "none",
        "scalarization_sweep": str(s.scalarization_sweep),
        "static_sweep": str(s.static_sweep),
        "epochs": str(t.epochs),
        "batch_size": str(t.batch_size),
        "optimizer": t.optimizer,
        "backbone": m.backbone,
        "weights": m.weights,
        **data_params,
    }


def write_outputs(
    uri: str,
    experiment: str,
    parent: TrackedRun | None,
    parent_ids: list[str] | None,
    out_dir: Path,
) -> tuple[pd.DataFrame, list[Path]]:
    """Read the study's trials back from MLflow, write the report folder (leaderboard, figures,
    report.html; see :mod:`mtlbench.report.files`) and log its files to ``parent``.

    ``parent_ids`` None means every study of the experiment. Single-task baselines may come
    from any study of the experiment with the same data, split, image size, backbone and
    epochs; every multi-task trial they apply to gets ``test/delta_m`` logged.
    """
    from mtlbench.report.files import build_report

    outcome = build_report(uri, experiment, parent_ids, out_dir)
    if parent is not None:
        for f in outcome.files:
            parent.log_artifact(f)
    return outcome.summary, outcome.files
