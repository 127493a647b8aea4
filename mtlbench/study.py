"""Optuna studies (issue 4): placeholder until the Optuna search lands."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtlbench.config import ConfigError, RunConfig
from mtlbench.progress import Reporter

if TYPE_CHECKING:
    from mtlbench.search import StudyOutcome


def run_optuna(cfg: RunConfig, reporter: Reporter | None = None) -> StudyOutcome:
    raise ConfigError("--search optuna is not available yet; use --search grid")
