"""What every process of an Optuna study shares: the study's user attributes (the names, and the
:class:`StudyContext` read back from them), the budget N, the sampler, the pruner and Optuna's
logging. The MLflow tag names are in :mod:`mtlbench.tracking`."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mtlbench.config import RunConfig, config_from_dict
from mtlbench.infra import interrupts
from mtlbench.infra.errors import UserError
from mtlbench.runs.optuna.space import Objective

if TYPE_CHECKING:
    import optuna

# Study user attributes (written once by the creator; n_trials updated by a re-run).
ATTR_CONFIG = "mtlbench.config"
ATTR_OBJECTIVE = "mtlbench.objective"
ATTR_PARENT = "mtlbench.mlflow_parent_run_id"
ATTR_N_TRIALS = "mtlbench.n_trials"
ATTR_DATA = "mtlbench.data"  # data_sha256 and split_sha256 every worker must reproduce
ATTR_DEFINITION = "mtlbench.definition"
# Trial user attributes.
STATUS_ATTR = "mtlbench.status"  # finished | pruned | diverged
RUN_ATTR = "mtlbench.mlflow_run_id"
SURPLUS_ATTR = "mtlbench.surplus"

MAX_CONSECUTIVE_FAILURES = 3
_SURPLUS_MARK = "mtlbench: surplus trial"


class Surplus(Exception):
    """This trial is beyond the study's N; it is given up before sampling anything."""


class TrialsFailed(UserError):
    """Several trials in a row raised an error: a bug or a broken setup, not bad luck."""


@dataclass(frozen=True)
class StudyContext:
    """What a worker reads back from the study."""

    name: str
    cfg: RunConfig
    objective: Objective
    parent_run_id: str
    data: Mapping[str, str]

    @staticmethod
    def from_study(study: optuna.Study) -> StudyContext:
        attrs = study.user_attrs
        missing = [k for k in (ATTR_CONFIG, ATTR_OBJECTIVE, ATTR_PARENT) if k not in attrs]
        if missing:
            raise UserError(
                f"Optuna study {study.study_name!r} was not created by `mtlbench run --search "
                f"optuna` (missing user attributes {', '.join(missing)})"
            )
        return StudyContext(
            name=study.study_name,
            cfg=config_from_dict(attrs[ATTR_CONFIG]),
            objective=Objective.from_attrs(attrs[ATTR_OBJECTIVE]),
            parent_run_id=str(attrs[ATTR_PARENT]),
            data=dict(attrs.get(ATTR_DATA) or {}),
        )


def target(study: optuna.Study) -> int:
    """N, read each time: a re-run with a larger --n-trials extends a study other workers run."""
    return int(study.user_attrs[ATTR_N_TRIALS])


def beyond_budget(study: optuna.Study, number: int) -> bool:
    """Whether trial ``number`` is surplus: N trials with smaller numbers are already finished,
    running or queued. The lowest-numbered of several racing trials always stays in budget."""
    from optuna.trial import TrialState

    taken = study.get_trials(
        deepcopy=False,
        states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING),
    )
    return sum(t.number < number for t in taken) >= target(study)


def worker_seed(base: int, index: int | None, n_existing: int) -> int:
    """Sampler seed of worker ``index`` joining a study that already has ``n_existing`` trials.

    A fresh study's first worker uses the base seed (a one-worker study is reproducible). Any
    other worker, and any worker of a continued study, needs another stream: a sampler seeded
    as before redraws the very parameters of the earlier trials. Random for a worker without
    an index (``mtlbench worker`` without --worker-index)."""
    if index is None:
        return secrets.randbelow(2**31)
    return (base + 10_007 * index + 1_000_003 * n_existing) % 2**31


def make_sampler(ctx: StudyContext, seed: int, n_trials: int) -> optuna.samplers.BaseSampler:
    import optuna

    if ctx.objective.kind == "pareto":
        # A population of about a quarter of the budget, so small studies still evolve.
        population = max(4, min(50, n_trials // 4))
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population)
    return optuna.samplers.TPESampler(seed=seed)


def make_pruner(ctx: StudyContext) -> optuna.pruners.BasePruner:
    import optuna

    s = ctx.cfg.search
    if s.pruner == "none" or not ctx.objective.prunable:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(
        n_startup_trials=s.prune_startup_trials, n_warmup_steps=s.prune_warmup_epochs
    )


class _DropExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # After Ctrl-C, Optuna reports the interrupted trial as failed, with a traceback;
        # the CLI's one-line "interrupted" message says it all.
        return _SURPLUS_MARK not in record.getMessage() and not interrupts.stopping()


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO; mtlbench reports through its reporter instead. Failed
    trials still show (WARNING), except the surplus trials this module gives up on purpose
    and trials stopped by Ctrl-C."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _DropExpected) for f in handler.filters):
            handler.addFilter(_DropExpected())
