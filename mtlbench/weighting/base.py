"""The weighting extension point.

A strategy is an ``nn.Module`` (its learned parameters and buffers live in ``state_dict`` and
are checkpointed with the model) that declares, through :attr:`Strategy.needs`, what it must
see each step:

* ``LOSSES``: the per-task batch losses; it returns a scalar loss to back-propagate.
* ``LAST_SHARED_LAYER``: the losses plus the per-task gradients of the last shared layer's
  weight (GradNorm); it still returns a scalar loss to back-propagate.
* ``REPRESENTATION``: per-task gradients of the shared features (heads only, cheap).
* ``SHARED_PARAMETERS``: per-task gradients of the shared backbone parameters.

Two declarations cover methods that need more than the current batch (wave 2 of the library):

* ``samples_per_step = k > 1`` (MoDo, SDMGrad: double sampling): the trainer splits each batch
  into k disjoint parts (independent samples of the same distribution), the engine computes the
  gradient of every (sample, task) loss and hands the strategy their ``[kT, kT]`` Gramian
  (:meth:`Strategy.sample_gramian_weights`); the shared update is ``sum_{s,t} W_st g_st``.
* ``needs_step_context = True`` (Auto-Lambda: validation data): before each step the trainer
  calls :meth:`Strategy.prepare_step` with a :class:`StepContext` (the model, the task-loss
  function, the training batch, a validation batch and the network's learning rate).

Gradient methods return the combined gradient for the shared block; the gradient engine
(:mod:`mtlbench.training.gradients`) computes the Jacobian once and applies the result, so no
strategy runs its own backward pass. Anything a strategy needs from the past reaches it through
:meth:`Strategy.on_epoch_end` / :meth:`Strategy.after_step` arguments, never through
attributes set from outside. Every strategy always reports the task weights it applied.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from mtlbench.mtl.tasks import Task
from mtlbench.weighting._linalg import gramian

HyperValue = float | int | str | tuple[float, ...]


class GradientNeed(enum.Enum):
    LOSSES = "losses"
    LAST_SHARED_LAYER = "last-shared-layer gradients"
    REPRESENTATION = "representation gradients"
    SHARED_PARAMETERS = "shared-parameter gradients"


@dataclass(frozen=True)
class HyperParam:
    """One declared hyperparameter: the CLI, MLflow params and Optuna all read this."""

    name: str
    default: HyperValue
    help: str
    kind: Literal["float", "int", "str", "floats"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False  # sample on a log scale in searches
    choices: tuple[str, ...] | None = None
    positional: bool = False  # set by the spec shorthand ``name:value`` (e.g. static:1,0.5,2)
    searchable: bool = True
    # A grid given the bare name runs one trial per choice (``stl`` -> stl:age, stl:gender ...).
    expand: bool = False

    def parse(self, text: str) -> HyperValue:
        try:
            value: HyperValue
            if self.kind == "float":
                value = float(text)
            elif self.kind == "int":
                value = int(text)
            elif self.kind == "floats":
                value = tuple(float(v) for v in text.split(",") if v.strip())
            else:
                value = text
        except ValueError:
            raise ValueError(
                f"{self.name}={text!r} is not a valid {self.kind} ({self.help})"
            ) from None
        return self.validate(value)

    def validate(self, value: HyperValue) -> HyperValue:
        if self.choices is not None and value not in self.choices:
            raise ValueError(
                f"{self.name}={value!r} is not one of the valid choices: {', '.join(self.choices)}"
            )
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, int | float):
                if not math.isfinite(v):
                    raise ValueError(f"{self.name}={value!r} must be finite")
                if self.low is not None and v < self.low:
                    raise ValueError(f"{self.name}={value!r} is below its minimum {self.low}")
                if self.high is not None and v > self.high:
                    raise ValueError(f"{self.name}={value!r} is above its maximum {self.high}")
        return value

    def format(self, value: HyperValue) -> str:
        if isinstance(value, tuple):
            return ",".join(f"{v:g}" for v in value)
        return f"{value:g}" if isinstance(value, float) else str(value)


WEIGHT_LR = "weight_lr"


def weight_lr_param(default: float, source: str) -> HyperParam:
    """The ``<strategy>.weight_lr`` hyperparameter of a strategy with learned weighting
    parameters: the lr of their own optimiser group (:meth:`Strategy.parameter_groups`).

    At the network's lr (3e-4 .. 1e-3 with Adam, which moves a parameter by about lr per step)
    a log-variance moves by ~0.1 in a few hundred steps, so the method silently becomes a fixed
    weighting; ``source`` says where the default comes from."""
    return HyperParam(
        WEIGHT_LR,
        default,
        f"lr of the learned weighting parameters (own optimiser group); default: {source}",
        low=1e-5,
        high=1.0,
        log=True,
    )


@dataclass(frozen=True)
class LossCombination:
    loss: torch.Tensor  # scalar, back-propagated through heads and backbone
    weights: torch.Tensor  # [T], detached: the multiplier each task loss received
    # Back-propagated with ``loss`` but not logged as the objective: a term that only trains the
    # strategy's own parameters (GradNorm's L_grad).
    aux_loss: torch.Tensor | None = None


@dataclass(frozen=True)
class GradientCombination:
    gradient: torch.Tensor  # [m]: the update direction for the shared block (m = Jacobian width)
    weights: torch.Tensor  # [T], detached: the (effective) weight of each task
    # A scalar that depends only on the strategy's own parameters (IMTL-H's loss scales); the
    # engine back-propagates it so those parameters get their gradient without a second path.
    aux_loss: torch.Tensor | None = None


@dataclass(frozen=True)
class SampleWeights:
    """What a ``samples_per_step > 1`` strategy returns."""

    shared: torch.Tensor  # [k, T]: coefficient of each (sample, task) gradient in the update
    weights: torch.Tensor  # [T]: weights of the tasks' sample-mean losses (heads, logging)


@dataclass(frozen=True)
class StepContext:
    """Everything a ``needs_step_context`` strategy may use before a step (nothing else).

    ``loss_fn(outputs, labels)`` gives the ``[T]`` task losses of the model's head outputs;
    ``model(x)`` returns ``(features, outputs)``. A strategy that runs the model here must leave
    its parameters and buffers as it found them."""

    model: nn.Module
    loss_fn: Callable[[Sequence[torch.Tensor], torch.Tensor], torch.Tensor]
    train_batch: tuple[torch.Tensor, torch.Tensor]
    validation_batch: tuple[torch.Tensor, torch.Tensor]
    lr: float  # the network's current learning rate


class Strategy(nn.Module):
    """Base class of all weighting strategies; subclasses register with ``@register``."""

    name: ClassVar[str]
    needs: ClassVar[GradientNeed]
    paper: ClassVar[str]
    summary: ClassVar[str] = ""
    hparams: ClassVar[tuple[HyperParam, ...]] = ()
    # Head parameters of gradient methods receive the gradient of sum_t w_t L_t with the
    # weights returned (LibMTL feeds them the unweighted sum instead; we say which).
    needs_losses_after_step: ClassVar[bool] = False
    # Gradient strategies whose update is ``J^T w`` with ``w`` a function of the Gramian
    # ``G = J J^T`` (and the losses) implement :meth:`gramian_weights` and set this: the engine
    # then never builds the ``[T, m]`` Jacobian for the shared parameters.
    weights_from_gramian: ClassVar[bool] = False
    # Gradient strategies whose state is as large as the gradients (DB-MTL's moving averages)
    # implement :meth:`combine_parameter_gradients` and set this: the engine hands them the
    # per-task gradients parameter by parameter, never concatenated into the ``[T, m]`` matrix
    # (the copy alone cost 57 ms of a 300 ms ResNet18 step on 2 CPU cores).
    gradients_per_parameter: ClassVar[bool] = False
    # Independent samples per step (double sampling): see the module docstring. Only with
    # ``SHARED_PARAMETERS``; such strategies implement :meth:`sample_gramian_weights`.
    samples_per_step: ClassVar[int] = 1
    # With ``samples_per_step = k``: the ``(a, b)`` blocks (``a <= b``) of the ``[kT, kT]``
    # Gramian the strategy reads (None: all; the others arrive as NaN), and the samples whose
    # gradients its update uses (None: all). Declaring less lets the engine hold fewer gradient
    # rows and run fewer backward passes (:mod:`mtlbench.training.samples`).
    gramian_blocks: ClassVar[tuple[tuple[int, int], ...] | None] = None
    update_samples: ClassVar[tuple[int, ...] | None] = None
    # Wants :meth:`prepare_step` with a :class:`StepContext` (a validation batch) before each step.
    needs_step_context: ClassVar[bool] = False
    # The weights are the user's, never adapted in training (sum, mean, static, stl): the report
    # tests such strategies as fixed weightings, apart from the adaptive methods (issue 11).
    fixed_weights: ClassVar[bool] = False

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        self.n_tasks = len(self.tasks)
        declared = {h.name: h for h in self.hparams}
        unknown = set(hparams) - set(declared)
        if unknown:
            valid = ", ".join(declared) or "none"
            raise ValueError(
                f"strategy {self.name!r} has no hyperparameter(s) {', '.join(sorted(unknown))}; "
                f"valid: {valid}"
            )
        self.config: dict[str, HyperValue] = {
            name: h.validate(hparams.get(name, h.default)) for name, h in declared.items()
        }

    # --- the step -----------------------------------------------------------------------------
    def combine_losses(self, losses: torch.Tensor) -> LossCombination:
        """``losses``: [T] batch losses with graph. Implemented by ``LOSSES`` strategies."""
        raise NotImplementedError(f"{self.name} is not a loss-combining strategy")

    def combine_losses_with_gradients(
        self, losses: torch.Tensor, jacobian: torch.Tensor
    ) -> LossCombination:
        """``LAST_SHARED_LAYER`` strategies: ``losses`` [T] with graph, ``jacobian`` [T, m]
        (detached, float32) of each task loss w.r.t. the last shared layer's weight."""
        raise NotImplementedError(f"{self.name} does not combine losses with layer gradients")

    def combine_gradients(
        self,
        jacobian: torch.Tensor,
        losses: torch.Tensor,
        *,
        features: torch.Tensor | None = None,
    ) -> GradientCombination:
        """``jacobian``: [T, m] per-task gradients (float32); ``losses``: [T], detached;
        ``features``: the shared representation (detached, its own shape, rows of the Jacobian
        are its flattening) for ``REPRESENTATION`` strategies, None otherwise.

        Gramian strategies get this for free: ``w = gramian_weights(J J^T)``, update ``J^T w``;
        so do ``samples_per_step`` strategies, with every sample's Jacobian equal to ``J``.
        """
        if self.weights_from_gramian:
            weights = self.gramian_weights(gramian(jacobian), losses).to(jacobian)
            return GradientCombination(weights @ jacobian, weights)
        if self.samples_per_step > 1:
            # One Jacobian: every sample is this one (the single-sample form of the method).
            k = self.samples_per_step
            gram = gramian(jacobian).repeat(k, k)
            tiled = losses.reshape(1, -1).repeat(k, 1)
            result = self.sample_gramian_weights(gram, tiled)
            coef = result.shared.sum(dim=0).to(jacobian)
            return GradientCombination(coef @ jacobian, result.weights.to(jacobian))
        if self.gradients_per_parameter:  # the matrix is one parameter of width m
            rows = tuple((row.clone(),) for row in jacobian)
            (direction,), weights = self.combine_parameter_gradients(rows, losses)
            return GradientCombination(direction, weights)
        raise NotImplementedError(f"{self.name} is not a gradient-combining strategy")

    def combine_parameter_gradients(
        self, rows: Sequence[Sequence[torch.Tensor]], losses: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``gradients_per_parameter`` strategies: ``rows[t][p]`` is task t's float32 gradient
        of shared parameter p, shaped like p (the strategy may overwrite these tensors);
        ``losses`` [T], detached. Returns the update for each parameter and the [T] weights."""
        raise NotImplementedError(f"{self.name} does not combine per-parameter gradients")

    def gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """``weights_from_gramian`` strategies: [T] float32 weights from the [T, T] float64 CPU
        Gramian of the task gradients; ``losses`` [T], detached."""
        raise NotImplementedError(f"{self.name} does not weight from the Gramian")

    def sample_gramian_weights(self, gram: torch.Tensor, losses: torch.Tensor) -> SampleWeights:
        """``samples_per_step = k`` strategies: ``gram`` is the ``[kT, kT]`` float64 CPU Gramian
        of the gradients of ``losses.reshape(-1)`` (sample-major: row ``s*T + t`` is task t on
        sample s); ``losses`` [k, T], detached."""
        raise NotImplementedError(f"{self.name} does not weight from per-sample Gramians")

    def prepare_step(self, context: StepContext) -> None:
        """``needs_step_context`` strategies: runs before each step's forward pass."""

    # --- the optimiser ------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups of the strategy's learned parameters (none: ``[]``).

        Learned weighting parameters get their own group with the declared ``weight_lr`` and no
        weight decay (decay would pull log-variances and weights towards 0). A strategy with
        trainable parameters must declare ``weight_lr`` (:func:`weight_lr_param`)."""
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:
            return []
        if WEIGHT_LR not in self.config:
            raise TypeError(
                f"strategy {self.name!r} has learned parameters but declares no {WEIGHT_LR!r} "
                "hyperparameter (add weight_lr_param(...) to its hparams)"
            )
        lr = float(self.config[WEIGHT_LR])  # type: ignore[arg-type]
        return [{"params": params, "lr": lr, "weight_decay": 0.0}]

    def learned_weights(self) -> torch.Tensor | None:
        """[T] multipliers set by the learned parameters alone (detached), or None when the
        strategy learns none. Their largest relative change since construction is logged as
        ``strategy/weight_move`` (:meth:`diagnostics`), so a learned weighting whose weights
        never moved is visible in the report."""
        return None

    def remember_learned_start(self) -> None:
        """Called at the end of ``__init__`` by strategies with :meth:`learned_weights`: the
        start is a function of the hyperparameters only, so a resumed run (built afresh, then
        loaded) gets the same start without checkpointing it."""
        start = self.learned_weights()
        self._learned_start = None if start is None else start.detach().cpu().clone()

    # --- hooks with explicit arguments ---------------------------------------------------------
    def on_epoch_end(self, epoch: int, train_losses: torch.Tensor) -> None:
        """``train_losses``: [T] epoch means of the unweighted training losses."""

    def after_step(self, losses_before: torch.Tensor, losses_after: torch.Tensor) -> None:
        """Only called when ``needs_losses_after_step``; both [T], detached."""

    # --- what the trial is judged on ----------------------------------------------------------
    def trained_tasks(self) -> tuple[str, ...]:
        """Names of the tasks this strategy trains. Model selection (``val/score``) looks only
        at these, and a trial that trains one task is that task's single-task baseline."""
        return tuple(t.name for t in self.tasks)

    # --- reporting ----------------------------------------------------------------------------
    def diagnostics(self) -> dict[str, float]:
        """Counters the trainer logs each epoch as ``strategy/<key>``.

        Strategies that solve a problem each step call :meth:`track_solver` in ``__init__`` and
        :meth:`record_step` once per step; they then report three cumulative counts, since the
        start of the run (buffers in ``state_dict``, so a resumed run continues them exactly):

        * ``steps``: steps on which the strategy combined task gradients;
        * ``solver_failures``: steps on which the method's own problem had no solution (it is
          infeasible or unbounded for these gradients, e.g. Nash-MTL with a zero task gradient)
          or the solver did not reach one;
        * ``fallback_steps``: steps whose update is the strategy's documented fallback instead
          of the method's solution for that step's gradients (every failure, plus steps that
          reuse weights from a failed solve). ``fallback_steps / steps`` is the fraction of the
          run on which the method was not itself.

        Strategies without a solver report nothing from it. Strategies with learned weights
        (:meth:`learned_weights`) also report ``weight_move``, ``max_t |w_t / w_t(start) - 1|``
        (the report flags a learned weighting that moved < 10%)."""
        out: dict[str, float] = {}
        if self._tracks_solver:
            out.update(
                {
                    k: float(self.get_buffer(k))
                    for k in ("steps", "solver_failures", "fallback_steps")
                }
            )
        start: torch.Tensor | None = getattr(self, "_learned_start", None)
        now = self.learned_weights()
        if start is not None and now is not None:
            move = (now.detach().cpu().double() / start.double() - 1.0).abs().max()
            out["weight_move"] = float(move)
        return out

    _tracks_solver: bool = False

    def track_solver(self) -> None:
        """Register the cumulative ``steps`` / ``solver_failures`` / ``fallback_steps``
        buffers reported by :meth:`diagnostics`."""
        for name in ("steps", "solver_failures", "fallback_steps"):
            self.register_buffer(name, torch.zeros((), dtype=torch.long))
        self._tracks_solver = True

    def record_step(self, *, failed: bool, fallback: bool) -> None:
        """Count one step (see :meth:`diagnostics` for what each counter means)."""
        self.get_buffer("steps").add_(1)
        if failed:
            self.get_buffer("solver_failures").add_(1)
        if fallback or failed:
            self.get_buffer("fallback_steps").add_(1)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.config.items())


class RandomStrategy(Strategy):
    """A strategy that draws random numbers: from its own generator, seeded by ``seed``.

    The generator lives on the CPU (its draws are tiny: T weights, a task order, one mask) and
    its state travels in ``state_dict`` through ``get_extra_state``, so a resumed run continues
    the same random sequence. The global RNG is never touched.
    """

    def __init__(self, tasks: Sequence[Task], *, seed: int = 0, **hparams: Any) -> None:
        super().__init__(tasks, seed=seed, **hparams)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(seed)

    def draw_orders(self) -> list[list[int]]:
        """For each task i, a random order of the other tasks (PCGrad, GradVac)."""
        orders = []
        for i in range(self.n_tasks):
            perm = torch.randperm(self.n_tasks, generator=self.generator).tolist()
            orders.append([j for j in perm if j != i])
        return orders

    def get_extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
