"""Fit one configuration (strategy, learning rate, seed) and evaluate it.

Structure after torchvision's reference ``train.py``: :func:`train_one_epoch` and
:func:`evaluate` do one thing each; :func:`fit` loops over epochs, logs through a
:class:`~mtlbench.tracking.TrackedRun`-like object, keeps the best-validation weights and
evaluates them on test once at the end.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from mtlbench import checkpoint, gradients, weighting
from mtlbench.config import RunConfig, TrainConfig
from mtlbench.data.batches import BatchIterator
from mtlbench.model import HydraNet, build_model
from mtlbench.prepare import PreparedData, resolve_amp, resolve_channels_last
from mtlbench.progress import NullReporter, Reporter
from mtlbench.tasks import TASKS, task_losses
from mtlbench.weighting import Strategy
from mtlbench.weighting.registry import describe

PROGRESS_EVERY = 10  # steps between host syncs for the progress bar and the NaN check


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


@dataclass(frozen=True)
class EpochStats:
    task_losses: torch.Tensor  # [T] means of unweighted training losses
    total_loss: float  # mean of the weighted objective
    weights: torch.Tensor  # [T] mean applied weights
    images: int
    seconds: float
    diverged_task: str | None = None  # set when a loss became NaN/inf


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


def make_optimizer(
    train: TrainConfig, lr: float, model: nn.Module, strategy: Strategy
) -> torch.optim.Optimizer:
    groups: list[dict[str, Any]] = [
        {"params": [p for p in model.parameters() if p.requires_grad]},
    ]
    # Learned weighting parameters: their own group, lr (``<strategy>.weight_lr``), no decay.
    groups += strategy.parameter_groups()
    # Fused kernels (CPU and CUDA): one pass over all parameters; on ResNet18 on CPU the fused
    # AdamW step takes 5 ms against 22 ms for the default per-tensor loop.
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=lr, momentum=train.momentum, weight_decay=train.weight_decay, fused=True
        )
    return torch.optim.AdamW(groups, lr=lr, weight_decay=train.weight_decay, fused=True)


def _no_validation(strategy: Strategy) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    def fail() -> tuple[torch.Tensor, torch.Tensor]:
        raise ValueError(f"strategy {strategy.name!r} needs validation batches; none were given")

    return fail


class ValidationStream:
    """Validation batches for strategies that learn from validation data (Auto-Lambda).

    Batches cycle through a permutation of the validation split drawn from a generator seeded
    by (seed, epoch, pass), so the stream is a pure function of the epoch: a run resumed at an
    epoch boundary sees exactly the batches an uninterrupted run would.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        channels_last: bool = False,
    ) -> None:
        if images.shape[0] == 0:
            raise ValueError("the validation split is empty; this strategy needs validation data")
        self.images, self.labels = images, labels
        self.batch_size, self.seed, self.epoch = batch_size, seed, epoch
        self.channels_last = channels_last
        self.passes = 0
        self._it: Iterator[tuple[torch.Tensor, torch.Tensor]] = iter(())

    def _next_pass(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator(device=self.images.device)
        gen.manual_seed((self.seed * 1_000_003 + self.epoch) * 1_009 + self.passes)
        self.passes += 1
        return iter(
            BatchIterator(
                self.images,
                self.labels,
                self.batch_size,
                shuffle=True,
                augment=False,
                generator=gen,
                channels_last=self.channels_last,
            )
        )

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return next(self._it)
        except StopIteration:
            self._it = self._next_pass()
            return next(self._it)


def train_one_epoch(
    model: HydraNet,
    strategy: Strategy,
    optimizer: torch.optim.Optimizer,
    batches: BatchIterator,
    *,
    amp_dtype: torch.dtype | None,
    reporter: Reporter,
    description: str,
    validation_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> EpochStats:
    """One pass over ``batches``. ``validation_batch`` feeds strategies that declare
    ``needs_step_context`` (called once per step, only for them)."""
    model.train()
    tasks = model.tasks
    device = next(model.parameters()).device
    loss_sum = torch.zeros(len(tasks), device=device, dtype=torch.float64)
    weight_sum = torch.zeros(len(tasks), device=device, dtype=torch.float64)
    total_sum = torch.zeros((), device=device, dtype=torch.float64)
    shared, heads = model.shared_parameters(), model.head_parameters()
    n_steps = n_images = reported = 0
    start = time.perf_counter()
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    )
    with reporter.progress(description, total=len(batches)) as bar:
        for x, y in batches:
            optimizer.zero_grad(set_to_none=True)
            gradients.prepare_step(
                strategy,
                model,
                (x, y),
                validation_batch or _no_validation(strategy),
                float(optimizer.param_groups[0]["lr"]),
                tasks,
            )
            with autocast:
                features, losses = gradients.forward_losses(strategy, model, x, y, tasks)
            step = gradients.backward(strategy, losses, features, shared, heads)
            optimizer.step()
            losses = gradients.mean_losses(losses)
            if strategy.needs_losses_after_step:
                with torch.no_grad(), autocast:
                    after = task_losses(model(x).outputs, y, tasks)
                strategy.after_step(losses.detach(), after.detach())
            loss_sum += losses.detach().double()
            weight_sum += step.weights.double()
            total_sum += step.total_loss.double()
            n_steps += 1
            n_images += x.shape[0]
            if n_steps % PROGRESS_EVERY == 0 or n_steps == len(batches):
                if not math.isfinite(float(total_sum)) or not torch.isfinite(loss_sum).all():
                    break
                elapsed = time.perf_counter() - start
                bar.advance(
                    n_steps - reported,
                    loss=float(total_sum) / n_steps,
                    img_s=n_images / max(elapsed, 1e-9),
                )
                reported = n_steps
    seconds = time.perf_counter() - start
    means = (loss_sum / max(n_steps, 1)).float().cpu()
    diverged = None
    if not torch.isfinite(means).all() or not math.isfinite(float(total_sum)):
        bad = [t.name for t, v in zip(tasks, means.tolist(), strict=True) if not math.isfinite(v)]
        diverged = bad[0] if bad else "total"
    return EpochStats(
        task_losses=means,
        total_loss=float(total_sum) / max(n_steps, 1),
        weights=(weight_sum / max(n_steps, 1)).float().cpu(),
        images=n_images,
        seconds=seconds,
        diverged_task=diverged,
    )


@torch.no_grad()
def evaluate(
    model: HydraNet, batches: BatchIterator, *, amp_dtype: torch.dtype | None = None
) -> dict[str, float]:
    """Per-task mean losses (``loss_<task>``) and metrics (``age_mae`` ...) over a split."""
    model.eval()
    tasks = model.tasks
    device = next(model.parameters()).device
    loss_sum = torch.zeros(len(tasks), device=device, dtype=torch.float64)
    metric_sum = torch.zeros(len(tasks), device=device, dtype=torch.float64)
    n = 0
    autocast = (
        torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    )
    for x, y in batches:
        with autocast:
            out = model(x)
        b = x.shape[0]
        loss_sum += task_losses(out.outputs, y, tasks).double() * b
        metric_sum += torch.stack(
            [t.metric_sum(o, y) for t, o in zip(tasks, out.outputs, strict=True)]
        ).double()
        n += b
    losses = (loss_sum / max(n, 1)).tolist()
    metrics = (metric_sum / max(n, 1)).tolist()
    result = {f"loss_{t.name}": v for t, v in zip(tasks, losses, strict=True)}
    result.update({t.metric: v for t, v in zip(tasks, metrics, strict=True)})
    return result


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def trial_params(
    spec: TrialSpec, cfg: RunConfig, data: PreparedData, device: torch.device
) -> dict[str, str]:
    cls, hp = weighting.resolve(spec.strategy, cfg.search.strategy_params)
    trained = cls(TASKS, seed=spec.seed, **hp).trained_tasks()

    amp = resolve_amp(cfg.train, device)
    return {
        "strategy": spec.strategy,
        "lr": f"{spec.lr:g}",
        "seed": str(spec.seed),
        "epochs": str(cfg.train.epochs),
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


def _epoch_metrics(
    stats: EpochStats, val: dict[str, float], epoch_s: float, diagnostics: dict[str, float]
) -> dict[str, float]:
    metrics = {
        f"train/loss_{t.name}": v for t, v in zip(TASKS, stats.task_losses.tolist(), strict=True)
    }
    metrics["train/loss_total"] = stats.total_loss
    metrics.update({f"val/{k}": v for k, v in val.items()})
    metrics.update(
        {f"weight/{t.name}": v for t, v in zip(TASKS, stats.weights.tolist(), strict=True)}
    )
    metrics.update({f"strategy/{k}": v for k, v in diagnostics.items()})
    metrics["time/epoch_s"] = epoch_s
    metrics["throughput/train_img_s"] = stats.images / max(stats.seconds, 1e-9)
    return metrics


def _now_ms() -> int:
    return int(time.time() * 1000)


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
    _seed_everything(spec.seed)
    model = build_model(cfg.model, TASKS)
    model.init_regression_bias(0, data.reference.age_median)
    channels_last = resolve_channels_last(cfg.train, device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device).to(memory_format=memory_format)
    if cfg.train.compile:
        # In place (nn.Module.compile), so state_dict keys and checkpoints stay the same.
        model.backbone.compile()
    strategy = weighting.create(
        spec.strategy, TASKS, seed=spec.seed, overrides=cfg.search.strategy_params
    ).to(device)
    trained = strategy.trained_tasks()
    optimizer = make_optimizer(cfg.train, spec.lr, model, strategy)
    amp_dtype = resolve_amp(cfg.train, device)
    gen = torch.Generator(device=device).manual_seed(spec.seed)
    train_batches = BatchIterator(
        *data.train,
        cfg.train.batch_size,
        shuffle=True,
        augment=cfg.data.augment,
        generator=gen,
        drop_last=len(data.train[0]) > cfg.train.batch_size,
        channels_last=channels_last,
    )

    def eval_batches(split: tuple[torch.Tensor, torch.Tensor]) -> BatchIterator:
        return BatchIterator(
            *split,
            cfg.train.eval_batch_size,
            shuffle=False,
            augment=False,
            generator=None,
            channels_last=channels_last,
        )

    result = TrialResult(spec, status="finished")
    best_score = math.inf
    best_state: dict[str, torch.Tensor] | None = None
    timestamps: list[int] = []
    start_epoch = 0
    if checkpoint_dir is not None and checkpoint.exists(checkpoint_dir, checkpoint.LAST):
        state = checkpoint.load(checkpoint_dir, checkpoint.LAST)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        strategy.load_state_dict(state["strategy"])
        checkpoint.restore_rng(state["rng"], gen)
        result.history, timestamps = list(state["history"]), list(state["timestamps"])
        result.best_epoch, best_score = int(state["best_epoch"]), float(state["best_score"])
        result.val = dict(state["best_val"])
        if result.best_epoch >= 0:
            best_state = checkpoint.load(checkpoint_dir, checkpoint.BEST)
        start_epoch = int(state["epoch"]) + 1
        for record, ts in zip(result.history, timestamps, strict=True):
            metrics = {k: v for k, v in record.items() if k != "epoch"}
            run.log_metrics(metrics, step=int(record["epoch"]), timestamp_ms=ts)
        run.set_tags({"mtlbench.resumed_from_epoch": start_epoch - 1})
        reporter.info(f"{spec.label}: resuming after epoch {start_epoch - 1} from {checkpoint_dir}")
    epochs = cfg.train.epochs
    for epoch in range(start_epoch, epochs):
        stats = train_one_epoch(
            model,
            strategy,
            optimizer,
            train_batches,
            amp_dtype=amp_dtype,
            reporter=reporter,
            description=f"{spec.label}  epoch {epoch + 1}/{epochs}",
            validation_batch=ValidationStream(
                *data.val,
                cfg.train.batch_size,
                seed=spec.seed,
                epoch=epoch,
                channels_last=channels_last,
            )
            if strategy.needs_step_context
            else None,
        )
        result.train_seconds += stats.seconds
        val_start = time.perf_counter()
        val = evaluate(model, eval_batches(data.val), amp_dtype=amp_dtype)
        # The last step's update can blow up the weights with every training loss still
        # finite: non-finite validation losses are divergence too.
        bad_val = [t.name for t in TASKS if not math.isfinite(val[f"loss_{t.name}"])]
        diverged = stats.diverged_task or (f"{bad_val[0]} (validation)" if bad_val else None)
        if diverged is not None:
            result.status = "diverged"
            result.message = f"loss of task {diverged!r} became non-finite in epoch {epoch}"
            run.set_tags(
                {
                    "mtlbench.status": "diverged",
                    "diverged": "true",
                    "diverged_epoch": epoch,
                    "diverged_task": diverged,
                }
            )
            break
        strategy.on_epoch_end(epoch, stats.task_losses)
        val["score"] = data.reference.score(val, trained)
        epoch_s = stats.seconds + time.perf_counter() - val_start
        metrics = _epoch_metrics(stats, val, epoch_s, strategy.diagnostics())
        result.history.append({"epoch": float(epoch), **metrics})
        timestamps.append(_now_ms())
        if val["score"] < best_score:
            best_score = val["score"]
            result.best_epoch = epoch
            result.val = dict(val)
            best_state = copy.deepcopy(model.state_dict())
            if checkpoint_dir is not None:
                checkpoint.save(best_state, checkpoint_dir, checkpoint.BEST)
        if checkpoint_dir is not None:
            checkpoint.save(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "strategy": strategy.state_dict(),
                    "rng": checkpoint.rng_state(gen),
                    "history": result.history,
                    "timestamps": timestamps,
                    "best_epoch": result.best_epoch,
                    "best_score": best_score,
                    "best_val": result.val,
                },
                checkpoint_dir,
                checkpoint.LAST,
            )
        run.log_metrics(metrics, step=epoch, timestamp_ms=timestamps[-1])
        if on_epoch is not None:
            try:
                on_epoch(epoch, dict(val))
            except TrialStopped as stop:
                result.status = "pruned"
                result.message = f"stopped after epoch {epoch}: {stop}"
                run.set_tags({"mtlbench.status": "pruned", "pruned_epoch": epoch})
                break
    if result.status == "finished" and best_state is not None:
        model.load_state_dict(best_state)
        test = evaluate(model, eval_batches(data.test), amp_dtype=amp_dtype)
        test["score"] = data.reference.score(test, trained)
        result.test = test
        final = {f"test/{k}": v for k, v in test.items()}
        final.update({f"best_val/{k}": v for k, v in result.val.items()})
        final["best_epoch"] = float(result.best_epoch)
        run.log_metrics(final, step=result.best_epoch)
        run.set_tags({"mtlbench.status": "finished"})
    if checkpoint_dir is not None and not cfg.train.keep_checkpoints:
        checkpoint.remove(checkpoint_dir)
    return result
