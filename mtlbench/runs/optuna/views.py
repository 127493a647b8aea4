"""Optuna's own views of a finished study, written as files for the MLflow parent run.

Optimisation history and hyperparameter importances (Optuna's matplotlib plots: PNGs, no
extra dependency, no network), every trial as CSV, and for a multi-objective study the Pareto
front (table and plot). A plot Optuna cannot draw yet (fewer than two finished trials, one
value only) is skipped with the reason.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtlbench.runs.optuna.space import Objective

if TYPE_CHECKING:
    import optuna
    import pandas as pd

DPI = 110


@dataclass
class StudyFiles:
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "<plot>: <reason>"
    pareto: pd.DataFrame | None = None


def _save(ax: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt
    import numpy as np

    first = np.asarray(ax).flat[0] if isinstance(ax, np.ndarray) else ax
    fig = first.figure
    fig.set_size_inches(8, 5)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _plot(out: StudyFiles, path: Path, draw: Callable[[], Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from optuna.exceptions import ExperimentalWarning

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.simplefilter("ignore", UserWarning)
            out.files.append(_save(draw(), path))
    except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as exc:
        out.skipped.append(f"{path.name}: {exc}")


def pareto_table(study: optuna.Study, objective: Objective) -> pd.DataFrame:
    """One row per trial on the Pareto front: number, parameters, values, MLflow run."""
    import pandas as pd

    from mtlbench.runs.optuna.context import RUN_ATTR

    rows = []
    for t in sorted(study.best_trials, key=lambda t: t.number):
        row: dict[str, Any] = {"trial": t.number}
        row.update({k: v for k, v in t.params.items()})
        row.update(dict(zip(objective.names, t.values, strict=True)))
        row["mlflow_run_id"] = t.user_attrs.get(RUN_ATTR, "")
        rows.append(row)
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines) + "\n"


def write_study_files(study: optuna.Study, objective: Objective, out_dir: Path) -> StudyFiles:
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    out_dir.mkdir(parents=True, exist_ok=True)
    out = StudyFiles()
    trials_csv = out_dir / "optuna_trials.csv"
    study.trials_dataframe().to_csv(trials_csv, index=False)
    out.files.append(trials_csv)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if objective.kind != "pareto":
        name = objective.names[0]
        _plot(
            out,
            out_dir / "optuna_history.png",
            lambda: ovm.plot_optimization_history(study, target_name=name),
        )
        _plot(
            out,
            out_dir / "optuna_importances.png",
            lambda: ovm.plot_param_importances(study, target_name=name),
        )
        return out
    out.pareto = pareto_table(study, objective)
    for suffix, text in (
        ("csv", out.pareto.to_csv(index=False)),
        ("md", _markdown(out.pareto)),
    ):
        path = out_dir / f"pareto_front.{suffix}"
        path.write_text(text, encoding="utf-8")
        out.files.append(path)
    if len(complete) >= 1:
        _plot(
            out,
            out_dir / "pareto_front.png",
            lambda: ovm.plot_pareto_front(study, target_names=list(objective.names)),
        )
    for i, name in enumerate(objective.names):
        _plot_target(out, study, ovm, i, name, out_dir)
    return out


def _plot_target(
    out: StudyFiles, study: optuna.Study, ovm: Any, index: int, name: str, out_dir: Path
) -> None:
    """History and importances of one objective of a multi-objective study."""

    def value(t: optuna.trial.FrozenTrial) -> float:
        return float(t.values[index])

    _plot(
        out,
        out_dir / f"optuna_history_{name}.png",
        lambda: ovm.plot_optimization_history(study, target=value, target_name=name),
    )
    _plot(
        out,
        out_dir / f"optuna_importances_{name}.png",
        lambda: ovm.plot_param_importances(study, target=value, target_name=name),
    )
