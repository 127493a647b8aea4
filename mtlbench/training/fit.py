"""Fit one configuration (strategy, learning rate, seed) and evaluate it.

Structure after torchvision's reference ``train.py``: ``train_one_epoch`` and ``evaluate``
(:mod:`mtlbench.training.loop`) do one thing each; :func:`fit` restores, steps and saves one
:class:`_Trial` per epoch, logs through a
:class:`~mtlbench.tracking.TrackedRun`-like object, keeps the best-validation weights and
evaluates them on test once at the end.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from mtlbench import weighting
from mtlbench.config import RunConfig
from mtlbench.data.batches import BatchIterator
from mtlbench.infra.progress import NullReporter, Reporter
from mtlbench.mtl.model import build_model
from mtlbench.mtl.tasks import Task
from mtlbench.tracking import (
    FALLBACK_LIMIT,
    REFERENCE_PREFIX,
    RESUMED_FROM_TAG,
    SOLVER_FALLBACK_TAG,
    STATUS_TAG,
    TASKS_TAG,
    Status,
)
from mtlbench.training import checkpoint
from mtlbench.training.loop import (
    EpochStats,
    ValidationStream,
    evaluate,
    make_optimizer,
    train_one_epoch,
)
from mtlbench.training.prepare import PreparedData, resolve_amp, resolve_channels_last
from mtlbench.weighting.registry import describe


class RunLike(Protocol):
    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp_ms: int | None = None
    ) -> None: ...
    def log_params(self, params: Mapping[str, Any]) -> None: ...
    def set_tags(self, tags: Mapping[str, Any]) -> None: ...


class NullRun:
    """Discards everything (benchmarks, unit tests)."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int | None, dict[str, float]]] = []
        self.params: dict[str, Any] = {}
        self.tags: dict[str, Any] = {}

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp_ms: int | None = None
    ) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.tags.update(tags)


class TrialStopped(Exception):
    """Raised by an ``on_epoch`` callback to end a trial early (an Optuna pruner, say).

    The trial ends with status ``pruned``: no test evaluation, not a result.
    """


EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class TrialSpec:
    strategy: str  # a strategy spec, e.g. "dwa" or "static:1,0.5,2"
    lr: float
    seed: int

    @property
    def label(self) -> str:
        return f"{self.strategy} lr={self.lr:g} seed={self.seed}"


@dataclass
class TrialResult:
    spec: TrialSpec
    status: str  # finished | diverged
    best_epoch: int = -1
    val: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    message: str = ""
    train_seconds: float = 0.0  # inside train_one_epoch only (this process, this attempt)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def trial_params(
    spec: TrialSpec, cfg: RunConfig, data: PreparedData, device: torch.device
) -> dict[str, str]:
    cls, hp = weighting.resolve(spec.strategy, cfg.search.strategy_params)
    trained = cls(data.tasks.tasks, seed=spec.seed, **hp).trained_tasks()

    amp = resolve_amp(cfg.train, device)
    return {
        "strategy": spec.strategy,
        "lr": f"{spec.lr:g}",
        "seed": str(spec.seed),
        "epochs": str(cfg.train.epochs),
        "patience": str(cfg.train.patience),
        "batch_size": str(cfg.train.batch_size),
        "backbone": cfg.model.backbone,
        "weights": cfg.model.weights,
        "optimizer": cfg.train.optimizer,
        "weight_decay": f"{cfg.train.weight_decay:g}",
        "device": str(device),
        "amp": "bf16" if amp is not None else "off",
        "channels_last": str(resolve_channels_last(cfg.train, device)),
        "compile": str(cfg.train.compile),
        "strategy_needs": cls.needs.value,
        "tasks": ",".join(trained),
        **data.params,
        **describe(hp, cls),
    }


def best_params(epoch: int, val: Mapping[str, float]) -> dict[str, str]:
    """The best epoch and its validation values as params ``best.epoch``, ``best.val_<k>``:
    as metrics, MLflow would draw each as a one-dot chart ahead of the per-epoch curves."""
    return {"best.epoch": str(epoch), **{f"best.val_{k}": repr(float(v)) for k, v in val.items()}}


def fallback_fraction(diagnostics: Mapping[str, float]) -> float | None:
    """Share of the steps so far on which the strategy applied its documented fallback instead
    of its method's solution; None for strategies without a solver."""
    steps = diagnostics.get("steps", 0.0)
    if "fallback_steps" not in diagnostics or steps <= 0:
        return None
    return float(diagnostics["fallback_steps"]) / float(steps)


def _epoch_metrics(
    tasks: tuple[Task, ...],
    stats: EpochStats,
    val: dict[str, float],
    epoch_s: float,
    diagnostics: dict[str, float],
) -> dict[str, float]:
    metrics = {
        f"train/loss_{t.name}": v for t, v in zip(tasks, stats.task_losses.tolist(), strict=True)
    }
    metrics["train/loss_total"] = stats.total_loss
    metrics.update({f"val/{k}": v for k, v in val.items()})
    metrics.update(
        {f"weight/{t.name}": v for t, v in zip(tasks, stats.weights.tolist(), strict=True)}
    )
    metrics.update({f"strategy/{k}": v for k, v in diagnostics.items()})
    fraction = fallback_fraction(diagnostics)
    if fraction is not None:
        metrics["strategy/fallback_fraction"] = fraction
    metrics["time/epoch_s"] = epoch_s
    metrics["throughput/train_img_s"] = stats.images / max(stats.seconds, 1e-9)
    return metrics


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Trial:
    """The state of one trial while it trains: model, strategy, optimiser, batches, the result
    so far and the best weights. :func:`fit` drives it: restore, then one :meth:`epoch` and one
    :meth:`save` per epoch, then :meth:`finish`."""

    def __init__(
        self, spec: TrialSpec, cfg: RunConfig, data: PreparedData, device: torch.device
    ) -> None:
        _seed_everything(spec.seed)
        self.spec, self.cfg, self.data = spec, cfg, data
        tasks = data.tasks.tasks
        model = build_model(cfg.model, tasks, in_channels=int(data.train[0].shape[1]))
        # Declared per task by the reference, never by name: regression heads start at their
        # constant predictor; classification heads at the usual zero-mean initialisation.
        for index, value in data.reference.initial_outputs().items():
            model.init_output_bias(index, value)
        self.channels_last = resolve_channels_last(cfg.train, device)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(device).to(memory_format=memory_format)
        if cfg.train.compile:
            # In place (nn.Module.compile), so state_dict keys and checkpoints stay the same.
            self.model.backbone.compile()
        self.strategy = weighting.create(
            spec.strategy, tasks, seed=spec.seed, overrides=cfg.search.strategy_params
        ).to(device)
        self.trained = self.strategy.trained_tasks()
        self.optimizer = make_optimizer(cfg.train, spec.lr, self.model, self.strategy)
        self.amp_dtype = resolve_amp(cfg.train, device)
        self.gen = torch.Generator(device=device).manual_seed(spec.seed)
        self.train_batches = BatchIterator(
            *data.train,
            cfg.train.batch_size,
            shuffle=True,
            augment=cfg.data.augment,
            generator=self.gen,
            drop_last=len(data.train[0]) > cfg.train.batch_size,
            channels_last=self.channels_last,
            flip=data.flip,
        )
        self.result = TrialResult(spec, status=Status.FINISHED)
        self.best_score = math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.timestamps: list[int] = []
        self.metrics: dict[str, float] = {}  # the last epoch's, as logged

    def eval_batches(self, split: tuple[torch.Tensor, torch.Tensor]) -> BatchIterator:
        return BatchIterator(
            *split,
            self.cfg.train.eval_batch_size,
            shuffle=False,
            augment=False,
            generator=None,
            channels_last=self.channels_last,
        )

    def _validation_stream(self, epoch: int) -> ValidationStream | None:
        """Validation batches for a strategy that declares it learns from them, else None."""
        if not self.strategy.needs_step_context:
            return None
        return ValidationStream(
            *self.data.val,
            self.cfg.train.batch_size,
            seed=self.spec.seed,
            epoch=epoch,
            channels_last=self.channels_last,
        )

    def restore(self, folder: Path, run: RunLike) -> int:
        """Continue from the last checkpoint in ``folder``; returns the next epoch. The stored
        history is logged again with its own timestamps (MLflow drops exact duplicates)."""
        state = checkpoint.load(folder, checkpoint.LAST)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.strategy.load_state_dict(state["strategy"])
        checkpoint.restore_rng(state["rng"], self.gen)
        result = self.result
        result.history, self.timestamps = list(state["history"]), list(state["timestamps"])
        result.best_epoch, self.best_score = int(state["best_epoch"]), float(state["best_score"])
        result.val = dict(state["best_val"])
        if result.best_epoch >= 0:
            self.best_state = checkpoint.load(folder, checkpoint.BEST)
        for record, ts in zip(result.history, self.timestamps, strict=True):
            metrics = {k: v for k, v in record.items() if k != "epoch"}
            run.log_metrics(metrics, step=int(record["epoch"]), timestamp_ms=ts)
        next_epoch = int(state["epoch"]) + 1
        run.set_tags({RESUMED_FROM_TAG: next_epoch - 1})
        return next_epoch

    def epoch(self, epoch: int, run: RunLike, reporter: Reporter) -> dict[str, float] | None:
        """Train and validate one epoch; returns its validation metrics, or None when a loss
        became non-finite (the trial is then over, status ``diverged``)."""
        epochs = self.cfg.train.epochs
        stats = train_one_epoch(
            self.model,
            self.strategy,
            self.optimizer,
            self.train_batches,
            amp_dtype=self.amp_dtype,
            reporter=reporter,
            description=f"{self.spec.label}  epoch {epoch + 1}/{epochs}",
            validation_batch=self._validation_stream(epoch),
        )
        result = self.result
        result.train_seconds += stats.seconds
        val_start = time.perf_counter()
        val = evaluate(self.model, self.eval_batches(self.data.val), amp_dtype=self.amp_dtype)
        # The last step's update can blow up the weights with every training loss still
        # finite: non-finite validation losses are divergence too.
        bad_val = [t.name for t in self.model.tasks if not math.isfinite(val[f"loss_{t.name}"])]
        diverged = stats.diverged_task or (f"{bad_val[0]} (validation)" if bad_val else None)
        if diverged is not None:
            result.status = Status.DIVERGED
            result.message = f"loss of task {diverged!r} became non-finite in epoch {epoch}"
            run.set_tags(
                {
                    STATUS_TAG: Status.DIVERGED,
                    "diverged": "true",
                    "diverged_epoch": epoch,
                    "diverged_task": diverged,
                }
            )
            return None
        self.strategy.on_epoch_end(epoch, stats.task_losses)
        val["score"] = self.data.reference.score(val, self.trained)
        epoch_s = stats.seconds + time.perf_counter() - val_start
        diagnostics = self.strategy.diagnostics()
        metrics = _epoch_metrics(self.model.tasks, stats, val, epoch_s, diagnostics)
        result.history.append({"epoch": float(epoch), **metrics})
        self.timestamps.append(_now_ms())
        if val["score"] < self.best_score:
            self.best_score = val["score"]
            result.best_epoch = epoch
            result.val = dict(val)
            self.best_state = copy.deepcopy(self.model.state_dict())
        self.metrics = metrics
        return val

    def save(self, epoch: int, folder: Path) -> None:
        """Atomic checkpoints after ``epoch``: everything :meth:`restore` needs, and the best
        weights when this epoch improved them."""
        if self.result.best_epoch == epoch and self.best_state is not None:
            checkpoint.save(self.best_state, folder, checkpoint.BEST)
        state = {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "strategy": self.strategy.state_dict(),
            "rng": checkpoint.rng_state(self.gen),
            "history": self.result.history,
            "timestamps": self.timestamps,
            "best_epoch": self.result.best_epoch,
            "best_score": self.best_score,
            "best_val": self.result.val,
        }
        checkpoint.save(state, folder, checkpoint.LAST)

    def finish(self, run: RunLike) -> None:
        """Evaluate the best weights on test and log the final metrics (finished trials)."""
        result = self.result
        if result.status != Status.FINISHED or self.best_state is None:
            return
        self.model.load_state_dict(self.best_state)
        test = evaluate(self.model, self.eval_batches(self.data.test), amp_dtype=self.amp_dtype)
        test["score"] = self.data.reference.score(test, self.trained)
        result.test = test
        constant = {REFERENCE_PREFIX + k: v for k, v in self.data.constant_test.items()}
        run.log_metrics(constant, step=result.best_epoch)
        run.log_metrics({f"test/{k}": v for k, v in test.items()}, step=result.best_epoch)
        run.log_params(best_params(result.best_epoch, result.val))
        run.set_tags({STATUS_TAG: Status.FINISHED})


def _tag_fallbacks(diagnostics: Mapping[str, float], run: RunLike) -> None:
    """Mark the trial in MLflow (not only in the log) when the method was often not itself:
    the report then flags its row."""
    fraction = fallback_fraction(diagnostics)
    if fraction is not None and fraction > FALLBACK_LIMIT:
        run.set_tags({SOLVER_FALLBACK_TAG: f"{fraction:.4f}"})


def fit(
    spec: TrialSpec,
    cfg: RunConfig,
    data: PreparedData,
    device: torch.device,
    run: RunLike | None = None,
    reporter: Reporter | None = None,
    on_epoch: EpochCallback | None = None,
    checkpoint_dir: Path | None = None,
) -> TrialResult:
    """Train one trial for ``cfg.train.epochs`` epochs; return its best-validation result.

    ``on_epoch(epoch, val_metrics)`` runs after each epoch's validation (``val_metrics`` has
    ``score`` and the task metrics); raising :class:`TrialStopped` from it ends the trial.

    With ``checkpoint_dir``, every epoch ends with an atomic checkpoint there, and a trial
    whose folder already holds one continues from it: same weights, optimiser and strategy
    state, RNG streams and metric history, so on CPU the result equals an uninterrupted run.
    Metrics are logged with the timestamps stored in the checkpoint, so re-logging the history
    after a resume is idempotent (MLflow drops exact duplicates).
    """
    run = run or NullRun()
    reporter = reporter or NullReporter()
    trial = _Trial(spec, cfg, data, device)
    run.set_tags({TASKS_TAG: data.tasks.to_json()})
    result = trial.result
    start_epoch = 0
    if checkpoint_dir is not None and checkpoint.exists(checkpoint_dir, checkpoint.LAST):
        start_epoch = trial.restore(checkpoint_dir, run)
        reporter.info(f"{spec.label}: resuming after epoch {start_epoch - 1} from {checkpoint_dir}")
    for epoch in range(start_epoch, cfg.train.epochs):
        val = trial.epoch(epoch, run, reporter)
        if val is None:
            break
        if checkpoint_dir is not None:
            trial.save(epoch, checkpoint_dir)
        run.log_metrics(trial.metrics, step=epoch, timestamp_ms=trial.timestamps[-1])
        if on_epoch is not None:
            try:
                on_epoch(epoch, dict(val))
            except TrialStopped as stop:
                result.status = Status.PRUNED
                result.message = f"stopped after epoch {epoch}: {stop}"
                run.set_tags({STATUS_TAG: Status.PRUNED, "pruned_epoch": epoch})
                break
        patience = cfg.train.patience
        if patience and epoch < cfg.train.epochs - 1 and epoch - result.best_epoch >= patience:
            # A plateau: the best weights are already kept, more epochs would only cost time.
            result.message = (
                f"stopped after epoch {epoch}: no better validation score for {patience} epochs"
            )
            run.set_tags({"mtlbench.stopped_early_epoch": epoch})
            break
    _tag_fallbacks(trial.strategy.diagnostics(), run)
    trial.finish(run)
    if checkpoint_dir is not None and not cfg.train.keep_checkpoints:
        # The best weights wait for the end of the study, which logs the chosen trials' models.
        keep_best = cfg.tracking.log_model != "none" and result.status == Status.FINISHED
        checkpoint.remove(checkpoint_dir, keep=(checkpoint.BEST,) if keep_best else ())
    return result
