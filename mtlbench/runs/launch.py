"""Run a study the way its configuration asks: a grid (in this process or a process pool) or an
Optuna study (with local worker processes)."""

from __future__ import annotations

from mtlbench.config import RunConfig
from mtlbench.infra.progress import NullReporter, Reporter
from mtlbench.runs.study import StudyOutcome, validate_strategies


def run_study(
    cfg: RunConfig, reporter: Reporter | None = None, *, resume: bool = False
) -> StudyOutcome:
    """Run every trial of the study; with ``resume`` (grid), continue the newest unfinished
    study with the same definition (see :func:`mtlbench.runs.grid.run_grid`)."""
    reporter = reporter or NullReporter()
    validate_strategies(cfg)
    if cfg.search.search == "optuna":
        from mtlbench.runs.optuna.study import run_optuna

        return run_optuna(cfg, reporter)
    from mtlbench.runs.grid import run_grid

    return run_grid(cfg, reporter, resume=resume)
