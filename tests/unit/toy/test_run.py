"""Strategies on the toy, driven through the trainer's gradient engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mpmath as mp
import numpy as np
import pytest
import torch

from mtlbench import weighting
from mtlbench.mtl.tasks import Task
from mtlbench.toy.problem import Start
from mtlbench.toy.run import (
    TOY_TASKS,
    ToyConfig,
    run_toy,
    run_trajectory,
    select_strategies,
)
from mtlbench.weighting.base import GradientCombination, GradientNeed, Strategy
from tests.unit.toy.test_problem import paper_losses

CAGRAD_STARTS = (Start(-8.5, 7.5), Start(-8.5, -5.0), Start(9.0, 9.0))


class _Spy(Strategy):
    """Records what the engine hands a gradient strategy; moves along the mean gradient."""

    name = "toy-spy"
    needs = GradientNeed.SHARED_PARAMETERS
    paper = "test double"

    def __init__(self, tasks: Sequence[Task], **kw: Any) -> None:
        super().__init__(tasks)
        self.jacobians: list[torch.Tensor] = []
        self.losses: list[torch.Tensor] = []

    def combine_gradients(
        self, jacobian: torch.Tensor, losses: torch.Tensor, *, features: torch.Tensor | None = None
    ) -> GradientCombination:
        self.jacobians.append(jacobian.clone())
        self.losses.append(losses.clone())
        w = torch.full((2,), 0.5)
        return GradientCombination(w @ jacobian, w)


def test_the_strategy_receives_the_2_by_2_jacobian_and_its_gradient_moves_x(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy = _Spy(TOY_TASKS)
    monkeypatch.setattr(weighting, "create", lambda *a, **k: spy)
    monkeypatch.setattr(weighting, "resolve", lambda spec: (_Spy, {}))
    traj = run_trajectory("toy-spy", Start(-8.5, 7.5), ToyConfig(("toy-spy",), steps=3), 1.0)
    jac = spy.jacobians[0]
    assert jac.shape == (2, 2)
    for task in range(2):  # row t = gradient of loss t, by mpmath differentiation
        ref = [
            mp.diff(lambda a, t=task: paper_losses(a, mp.mpf(7.5))[t], mp.mpf(-8.5)),
            mp.diff(lambda b, t=task: paper_losses(mp.mpf(-8.5), b)[t], mp.mpf(7.5)),
        ]
        assert jac[task].tolist() == pytest.approx([float(r) for r in ref], rel=1e-5, abs=1e-6)
    # The losses handed over are the shifted ones (f_i + 21).
    f1, f2 = paper_losses(mp.mpf(-8.5), mp.mpf(7.5))
    assert spy.losses[0].tolist() == pytest.approx([float(f1) + 21, float(f2) + 21], rel=1e-6)
    # Adam's first step moves each coordinate by the step size against the gradient's sign.
    g = 0.5 * (jac[0] + jac[1])
    step = traj.points[1] - traj.points[0]  # float32 x: 8.5 + 1e-3 rounds by 5e-7
    assert step == pytest.approx((-1e-3 * torch.sign(g)).tolist(), abs=1e-6)
    assert traj.points.shape == (4, 2) and traj.weights.shape == (3, 2)
    assert traj.weights[0].tolist() == [0.5, 0.5]


def test_all_gradient_selects_the_gradient_combining_strategies() -> None:
    chosen = select_strategies(["all-gradient"])
    for name in ("mgda", "pcgrad", "cagrad", "nash_mtl", "imtl", "upgrad", "gradnorm"):
        assert name in chosen
    for name in ("sum", "uncertainty", "dwa", "stl"):
        assert name not in chosen
    assert all(weighting.get(n).needs is not GradientNeed.LOSSES for n in chosen)
    everything = select_strategies(["all"])
    assert "sum" in everything and "famo" in everything and "stl" not in everything
    assert select_strategies(["sum", "mgda", "sum"]) == ("sum", "mgda")
    with pytest.raises(ValueError, match="valid strategies"):
        select_strategies(["nope"])


def test_bad_configs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="steps must be >= 1"):
        ToyConfig(("sum",), steps=0)
    with pytest.raises(ValueError, match="valid settings"):
        ToyConfig(("sum",), setting="nope")
    with pytest.raises(ValueError, match="no strategies"):
        ToyConfig(())
    with pytest.raises(ValueError, match="lr must be a positive"):
        ToyConfig(("sum",), lr=float("nan"))


def test_mgda_ends_on_the_pareto_set_from_the_lower_start() -> None:
    traj = run_trajectory("mgda", Start(-8.5, -5.0), ToyConfig(("mgda",), steps=10_000), 1.0)
    assert traj.error == ""
    assert traj.final_distance < 1e-3  # measured: 5e-5 (Adam's own jitter at step size 1e-3)
    # MGDA stops at the first Pareto point it meets: near the end of the set next to the start.
    assert traj.final[0] < -6.5


@pytest.mark.parametrize("start", [Start(-8.5, 7.5), Start(9.0, 9.0)])
def test_sum_stays_in_a_log_valley_from_the_upper_starts(start: Start) -> None:
    """CAGrad's Fig. 1: descending the sum of the losses from the two upper starting points
    falls into the valley of one loss (where -(x1 + 7)/2 + tanh(x2) = 0, or its mirror for f2),
    whose floor is flat, and crawls along it instead of reaching the Pareto set."""
    traj = run_trajectory("sum", start, ToyConfig(("sum",), steps=6000), 1.0)
    x1, x2 = traj.final
    assert x2 > 2.0
    valley = -(x1 + 7) / 2 + np.tanh(x2) if start.x1 < 0 else (7 - x1) / 2 - np.tanh(x2)
    assert abs(valley) < 0.05
    assert traj.final_distance > 10.0
    # It is still moving, but slowly: over the last 1000 steps it got < 0.15 closer.
    from mtlbench.toy.pareto import distance

    assert distance(traj.points[-1001]) - traj.final_distance < 0.15


def test_sum_reaches_the_set_from_the_lower_start() -> None:
    """The failure above is the starting point's, not the optimiser's."""
    traj = run_trajectory("sum", Start(-8.5, -5.0), ToyConfig(("sum",), steps=10_000), 1.0)
    assert traj.final_distance < 3e-3  # measured: 1.3e-3, still closing in
    # On its way to (0, -8.355), the minimiser of the mean loss (mu = 1/2), not to an end.
    assert -1.0 < traj.final[0] < 0.1


def test_loss_strategies_that_need_history_run_and_keep_their_state() -> None:
    cfg = ToyConfig(("famo", "dwa", "uncertainty"), steps=300, epoch_steps=50)
    for spec in select_strategies(cfg.strategies):
        traj = run_trajectory(spec, Start(-8.5, -5.0), cfg, 0.1)
        assert traj.error == "", spec
        assert np.all(np.isfinite(traj.points)) and np.all(np.isfinite(traj.weights))
    # DWA's weights leave 1 after two "epochs" of 50 steps.
    dwa = run_trajectory("dwa", Start(-8.5, -5.0), cfg, 0.1)
    assert dwa.weights[:100] == pytest.approx(np.ones((100, 2)))
    assert not np.allclose(dwa.weights[150], [1.0, 1.0])


def test_every_gradient_strategy_runs_from_every_start_of_both_settings() -> None:
    for setting in ("cagrad", "nash-mtl"):
        result = run_toy(ToyConfig(("all-gradient",), setting=setting, steps=25))
        for name, trajs in result.trajectories.items():
            for t in trajs:
                assert t.error == "", (setting, name, t.start, t.error)
                assert t.points.shape == (26, 2)
        assert set(result.trajectories) == set(select_strategies(["all-gradient"]))


def test_every_registered_strategy_runs_on_the_toy() -> None:
    """``all``: the loss-weighting ones too, including double sampling (k copies of the
    deterministic losses) and look-ahead strategies that run the model themselves."""
    result = run_toy(ToyConfig(("all",), steps=6))
    assert set(result.trajectories) == set(select_strategies(["all"]))
    for name, trajs in result.trajectories.items():
        for t in trajs:
            assert t.error == "", (name, t.start, t.error)
            assert np.all(np.isfinite(t.points)) and t.points.shape == (7, 2)


def test_runs_are_reproducible_for_a_seed() -> None:
    cfg = ToyConfig(("pcgrad",), steps=200, seed=3)
    a = run_trajectory("pcgrad", Start(9.0, 9.0), cfg, 1.0)
    b = run_trajectory("pcgrad", Start(9.0, 9.0), cfg, 1.0)
    assert np.array_equal(a.points, b.points)


@pytest.mark.slow
@pytest.mark.parametrize("start", CAGRAD_STARTS)
def test_mgda_ends_on_the_pareto_set_from_every_start_of_cagrad(start: Start) -> None:
    traj = run_trajectory("mgda", start, ToyConfig(("mgda",), steps=30_000), 1.0)
    assert traj.final_distance < 1e-2


def test_workers_give_the_same_trajectories_as_one_process() -> None:
    one = run_toy(ToyConfig(("pcgrad", "mgda"), steps=40, seed=1))
    two = run_toy(ToyConfig(("pcgrad", "mgda"), steps=40, seed=1, workers=2))
    assert list(one.trajectories) == list(two.trajectories)
    for name, trajs in one.trajectories.items():
        for a, b in zip(trajs, two.trajectories[name], strict=True):
            assert a.start == b.start and np.array_equal(a.points, b.points)


def test_strategy_counters_are_kept_and_per_step_warnings_silenced() -> None:
    """Nash-MTL has no bargaining solution while the two gradients point apart (from (0, 0)):
    the failures are counted in the trajectory, not warned about at every step."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traj = run_trajectory("nash_mtl", Start(0.0, 0.0), ToyConfig(("nash_mtl",), steps=25), 0.1)
    assert traj.diagnostics.get("solver_failures", 0) >= 1
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]
