"""``mtlbench run --search optuna``: create or continue an Optuna study, run it, report it.

This process is the study's coordinator: it prepares the data once (filling the decode cache
workers then read), creates the storage's tables, the study and its MLflow parent run BEFORE
any worker starts, then either runs trials itself (one worker) or starts ``--workers K`` local
worker processes, and finally writes the tables, Optuna's plots and (multi-objective) the
Pareto front as artifacts of the parent run. Workers on other machines join the same study
with ``mtlbench worker --study-name S --storage URL``.

``--n-trials N`` is what the study must HOLD: re-running the same command continues it (a
study is found again by its name, by default ``<experiment>-<hash of its definition>``), runs
only the missing trials and never repeats a finished one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mtlbench.config import ConfigError, RunConfig
from mtlbench.infra.progress import NullReporter, Reporter
from mtlbench.mtl.tasks import TaskSet
from mtlbench.runs.observe import log_dataset
from mtlbench.runs.optuna.context import (
    ATTR_CONFIG,
    ATTR_DATA,
    ATTR_DEFINITION,
    ATTR_N_TRIALS,
    ATTR_OBJECTIVE,
    ATTR_PARENT,
    RUN_ATTR,
    StudyContext,
    make_pruner,
    make_sampler,
    target,
    worker_seed,
)
from mtlbench.runs.optuna.space import Objective, check_strategies, choose_objective
from mtlbench.runs.optuna.workers import TrialRunner, find_parent
from mtlbench.tracking import N_TRIALS_TAG, PARETO_TAG, STUDY_TAG, RunKind

if TYPE_CHECKING:
    import optuna
    from optuna.storages import RDBStorage

    from mtlbench.runs.study import StudyOutcome
    from mtlbench.tracking import TrackedRun, Tracker
    from mtlbench.training.prepare import PreparedData

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")


def check_study_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ConfigError(
            f"study name {name!r} is not valid: use letters, digits, '.', '_' and '-' "
            "(at most 120 characters, starting with a letter or digit)"
        )
    return name


def stored_config(cfg: RunConfig) -> dict[str, Any]:
    """The configuration workers rebuild (JSON): paths made absolute so a local worker started
    from any folder finds them; the storage URL (it may hold a password) left out."""
    from mtlbench.tracking import tracking_uri_for_ui

    data = cfg.data
    if data.source is not None and os.path.exists(data.source):
        data = dataclasses.replace(data, source=os.path.abspath(data.source))
    if data.cache_dir is not None:
        data = dataclasses.replace(data, cache_dir=os.path.abspath(data.cache_dir))
    tracking = dataclasses.replace(
        cfg.tracking, tracking_uri=tracking_uri_for_ui(cfg.tracking.resolved_uri)
    )
    search = dataclasses.replace(cfg.search, storage=None)
    full = dataclasses.replace(cfg, data=data, tracking=tracking, search=search)
    return json.loads(json.dumps(full.to_dict(), default=str))


@dataclass
class OpenStudy:
    study: optuna.Study
    ctx: StudyContext
    parent: TrackedRun
    storage_url: str
    resumed: bool


def coordinator_storage(cfg: RunConfig) -> tuple[str, RDBStorage]:
    """The study's storage URL (``--storage`` or the local default), opened with table
    creation: the coordinator is the one process that may create them."""
    from mtlbench.runs.optuna.context import quiet_optuna
    from mtlbench.runs.optuna.storage import default_storage, open_storage

    quiet_optuna()
    s = cfg.search
    url = s.storage or default_storage(cfg.tracking.resolved_uri)
    storage = open_storage(url, heartbeat_s=s.heartbeat_s, max_retry=s.max_retry, create=True)
    return url, storage


def open_study(
    cfg: RunConfig,
    data: PreparedData,
    tracker: Tracker,
    reporter: Reporter,
    storage: tuple[str, RDBStorage] | None = None,
    worker_index: int = 0,
) -> OpenStudy:
    """Create the study (study, MLflow parent run, user attributes) or continue the existing
    one of the same name, checking it asks for the same work."""
    from mtlbench.report import tables as report
    from mtlbench.runs.optuna.storage import load_study, redact, study_exists
    from mtlbench.runs.study import differences, fingerprint, study_definition, study_params
    from mtlbench.tracking import KIND_TAG, load_trials

    s = cfg.search
    url, rdb = storage or coordinator_storage(cfg)
    definition = study_definition(cfg, data.params)
    name = check_study_name(
        s.study_name or f"{cfg.tracking.experiment}-{fingerprint(definition, 8)}"
    )
    if study_exists(rdb, name):
        probe = load_study(rdb, name)
        seed = worker_seed(s.sampler_seed, worker_index, len(probe.get_trials(deepcopy=False)))
        ctx = StudyContext.from_study(probe)
        changed = differences(probe.user_attrs.get(ATTR_DEFINITION, {}), definition)
        if changed:
            raise ConfigError(
                f"Optuna study {name!r} in {redact(url)!r} was created with other settings "
                f"({'; '.join(changed[:6])}); re-run with the original ones, or pick another "
                "--study-name"
            )
        ctx = dataclasses.replace(ctx, cfg=cfg)
        study = load_study(
            rdb, name, sampler=make_sampler(ctx, seed, s.n_trials), pruner=make_pruner(ctx)
        )
        study.set_user_attr(ATTR_CONFIG, stored_config(cfg))  # execution settings may change
        study.set_user_attr(ATTR_N_TRIALS, s.n_trials)
        parent = find_parent(tracker, ctx, reporter)
        parent.reopen()
        parent.set_tags({N_TRIALS_TAG: s.n_trials})
        return OpenStudy(study, ctx, parent, url, resumed=True)

    group = {**data.params, "backbone": cfg.model.backbone, "epochs": str(cfg.train.epochs)}
    tidy = report.tidy_trials(load_trials(tracker.uri, cfg.tracking.experiment))
    objective = choose_objective(s.objective, _baselines(tidy, group, data.tasks), data.tasks)
    import optuna

    ctx = StudyContext(name, cfg, objective, parent_run_id="", data=_data_hashes(data))
    seed = worker_seed(s.sampler_seed, worker_index, 0)
    try:
        study = optuna.create_study(
            storage=rdb,
            study_name=name,
            directions=objective.directions,
            sampler=make_sampler(ctx, seed, s.n_trials),
            pruner=make_pruner(ctx),
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise ConfigError(
            f"another process created Optuna study {name!r} at the same moment; join it with "
            f"`mtlbench worker --study-name {name} --storage ...` or re-run this command"
        ) from None
    params = {
        **study_params(cfg, data.params),
        "optuna.study_name": name,
        "optuna.storage": redact(url),
        "objective": objective.kind,
        "lr_range": ",".join(f"{v:g}" for v in s.lr_range),
        "sampler": "NSGAIISampler" if objective.kind == "pareto" else "TPESampler",
        "sampler_seed": str(s.sampler_seed),
        "pruner": s.pruner if objective.prunable else "none",
    }
    params.update({f"objective.baseline_{k}": f"{v:.6g}" for k, v in objective.baselines.items()})
    parent = tracker.start_run(
        f"optuna {name}",
        params=params,
        tags={KIND_TAG: RunKind.STUDY, STUDY_TAG: name, N_TRIALS_TAG: s.n_trials},
    )
    # The study's data on its parent run too: the runs table shows it with the children folded.
    log_dataset(tracker.client, parent.run_id, data.params)
    study.set_user_attr(ATTR_DEFINITION, definition)
    study.set_user_attr(ATTR_DATA, _data_hashes(data))
    study.set_user_attr(ATTR_OBJECTIVE, objective.to_attrs())
    study.set_user_attr(ATTR_N_TRIALS, s.n_trials)
    study.set_user_attr(ATTR_PARENT, parent.run_id)
    study.set_user_attr(ATTR_CONFIG, stored_config(cfg))
    ctx = dataclasses.replace(ctx, parent_run_id=parent.run_id)
    return OpenStudy(study, ctx, parent, url, resumed=False)


def _baselines(tidy: Any, group: dict[str, str], tasks: TaskSet) -> dict[str, float] | None:
    from mtlbench.runs.optuna.space import validation_baselines

    return validation_baselines(tidy, group, tasks)


def _data_hashes(data: PreparedData) -> dict[str, str]:
    return {k: data.params[k] for k in ("data_sha256", "split_sha256")}


def _describe(objective: Objective) -> str:
    if objective.kind == "val_delta_m":
        base = ", ".join(f"{k} {v:.4g}" for k, v in objective.baselines.items())
        return f"validation delta-m against single-task baselines ({base}), lower is better"
    if objective.kind == "pareto":
        return "Pareto front of validation age MAE (min), gender and race accuracy (max), NSGA-II"
    return "validation score (mean relative error; no single-task baselines yet), lower is better"


def run_optuna(cfg: RunConfig, reporter: Reporter | None = None) -> StudyOutcome:
    from mtlbench.runs.models import publish_models
    from mtlbench.runs.optuna.local import run_local_workers
    from mtlbench.runs.optuna.storage import count, redact
    from mtlbench.runs.study import StudyOutcome, write_outputs
    from mtlbench.tracking import Tracker
    from mtlbench.training.prepare import prepare_data, resolve_device

    reporter = reporter or NullReporter()
    start = time.perf_counter()
    check_strategies(cfg)
    s = cfg.search
    n_workers = max(s.workers, len(s.devices)) if s.devices else s.workers
    for index in s.devices:  # fail here, not in K worker processes
        resolve_device(f"cuda:{index}")
    if s.devices and n_workers == 1:
        cfg = dataclasses.replace(
            cfg, train=dataclasses.replace(cfg.train, device=f"cuda:{s.devices[0]}")
        )
    # With worker processes this process only prepares data and reports: keep it off the GPU.
    storage = coordinator_storage(cfg)  # first: a bad URL fails before any work
    device = resolve_device(cfg.train.device if n_workers == 1 else "cpu")
    data = prepare_data(cfg.data, device, reporter)
    tracker = Tracker(cfg.tracking.resolved_uri, cfg.tracking.experiment)
    opened = open_study(cfg, data, tracker, reporter, storage)
    study, ctx, parent = opened.study, opened.ctx, opened.parent
    before = count(study)
    reporter.info(
        f"Optuna study {ctx.name!r} in {redact(opened.storage_url)} "
        f"({'continued' if opened.resumed else 'created'}): {before.finished}/{s.n_trials} "
        f"finished; objective: {_describe(ctx.objective)}; MLflow parent run {parent.run_id}"
    )
    reporter.info(
        f"more workers (any machine that reaches the storage): mtlbench worker --study-name "
        f"{ctx.name} --storage '{redact(opened.storage_url)}'"
    )
    runner: TrialRunner | None = None
    try:
        if n_workers == 1:
            runner = TrialRunner(study, ctx, data, device, tracker, parent, reporter)
            runner.run()
        else:
            del data
            run_local_workers(study, ctx.name, opened.storage_url, n_workers, s.devices, reporter)
        summary, files = write_outputs(
            cfg.tracking.resolved_uri,
            cfg.tracking.experiment,
            parent,
            [parent.run_id],
            cfg.output_dir,
        )
        files += _study_files(study, ctx.objective, parent, tracker, cfg, reporter)
        publish_models(cfg, [parent.run_id], reporter)
    except BaseException:
        parent.end("KILLED")
        raise
    done = count(study)
    parent.set_tags({"mtlbench.n_finished": done.finished, "mtlbench.n_failed": done.failed})
    parent.end("FINISHED" if done.finished >= target(study) else "KILLED")
    return StudyOutcome(
        parent.run_id,
        runner.results if runner is not None else [],
        summary,
        files,
        time.perf_counter() - start,
    )


def _study_files(
    study: optuna.Study,
    objective: Objective,
    parent: TrackedRun,
    tracker: Tracker,
    cfg: RunConfig,
    reporter: Reporter,
) -> list[Any]:
    from optuna.trial import TrialState

    from mtlbench.runs.optuna.views import write_study_files
    from mtlbench.tracking import TrackedRun

    out = write_study_files(study, objective, cfg.output_dir)
    for f in out.files:
        parent.log_artifact(f)
    for reason in out.skipped:
        reporter.info(f"plot skipped: {reason}")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        reporter.warn("no trial of the study completed with a value (all pruned or diverged)")
    elif objective.kind == "pareto":
        assert out.pareto is not None
        for run_id in out.pareto["mlflow_run_id"]:
            if run_id:
                TrackedRun(tracker.client, str(run_id)).set_tags({PARETO_TAG: "true"})
        reporter.info(f"Pareto front: {len(out.pareto)} trial(s)")
        for record in out.pareto.to_dict("records"):
            shown = {k: v for k, v in record.items() if k != "mlflow_run_id" and v == v}
            reporter.info("  " + "  ".join(f"{k}={_fmt(v)}" for k, v in shown.items()))
    else:
        best = study.best_trial
        parent.log_metrics({f"best/{objective.kind}": float(best.value or 0.0)})
        best_run = best.user_attrs.get(RUN_ATTR, "")
        parent.set_tags({"mtlbench.best_trial": best.number, "mtlbench.best_run_id": best_run})
        reporter.info(
            f"best trial #{best.number}: {objective.kind}={best.value:.4g} "
            + " ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        )
    return list(out.files)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
