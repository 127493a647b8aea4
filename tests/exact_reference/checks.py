"""One check per gradient strategy: run it on a case, compare with the 60-digit reference and
assert the method's defining invariants. Each raises AssertionError with the numbers."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import mpmath as mp
import numpy as np
import torch

from mtlbench import weighting
from mtlbench.tasks import Task
from mtlbench.weighting.base import GradientCombination, Strategy
from tests.exact_reference import convex, equations
from tests.exact_reference.exact import FLOOR, REL, assert_close, exact_gram, floor, to_np
from tests.exact_reference.regimes import Case

Check = Callable[[Case], None]


def tasks(n: int) -> tuple[Task, ...]:
    return tuple(Task(f"t{i}", i, "regression", 1, f"m{i}", False) for i in range(n))


def create(name: str, case: Case, **hparams: Any) -> Strategy:
    return weighting.get(name)(tasks(case.n_tasks), seed=case.seed, **hparams)


def features(case: Case) -> torch.Tensor:
    """Shared features whose flattening the rows' columns index: a batch of 2 when it divides."""
    n = case.rows.shape[1]
    batch = 2 if n % 2 == 0 else 1
    rng = np.random.default_rng(case.seed + 1)
    return torch.as_tensor(rng.normal(size=(batch, n // batch)), dtype=torch.float32)


def combine(strategy: Strategy, case: Case) -> GradientCombination:
    jac = torch.as_tensor(case.rows)
    losses = torch.as_tensor(case.losses, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # failures are asserted via counters
        return strategy.combine_gradients(jac, losses, features=features(case))


def _gram(case: Case) -> mp.matrix:
    return exact_gram(case.rows)


def _rows(case: Case) -> np.ndarray:
    return case.rows.astype(np.float64)


def _no_conflict(
    label: str, d: np.ndarray, case: Case, weights: np.ndarray, got: np.ndarray
) -> None:
    """``<d, g_t> >= -tol ||d|| ||g_t||`` with tol = REL, plus the rounding floor."""
    rows = _rows(case)
    norms = np.linalg.norm(rows, axis=1)
    dots = rows @ d.astype(np.float64)
    bound = -(REL * np.linalg.norm(d) + floor(rows, weights, got)) * norms
    assert (dots >= bound).all(), f"{label}: conflicts with a task: {dots} < {bound}"


def _w(combo: GradientCombination) -> np.ndarray:
    return combo.weights.detach().double().cpu().numpy()


def _counters(strategy: Strategy) -> dict[str, float]:
    return strategy.diagnostics()


# --- the checks ---------------------------------------------------------------------------------
def check_mgda(case: Case, name: str = "mgda") -> None:
    combo = combine(create(name, case), case)
    a = to_np(convex.min_norm(_gram(case)))
    d = combo.gradient.double().numpy()
    assert_close(name, d, _rows(case), a, got_weights=_w(combo))
    _no_conflict(name, d, case, a, _w(combo))
    assert abs(float(combo.weights.sum()) - 1.0) < 1e-5, "MGDA weights lie on the simplex"


def check_mgda_ub(case: Case) -> None:
    check_mgda(case, "mgda_ub")


def check_upgrad(case: Case) -> None:
    combo = combine(create("upgrad", case), case)
    a = to_np(convex.upgrad(_gram(case)))
    d = combo.gradient.double().numpy()
    assert_close("upgrad", d, _rows(case), a, got_weights=_w(combo))
    _no_conflict("upgrad", d, case, a, _w(combo))


def check_cagrad(case: Case, c: float = 0.4) -> None:
    strategy = create("cagrad", case, c=c)
    combo = combine(strategy, case)
    gram = _gram(case)
    b_ref, value = convex.cagrad(gram, c)
    rows = _rows(case)
    d = combo.gradient.double().numpy()
    g0 = rows.mean(axis=0)
    radius = c * np.linalg.norm(g0)
    slack = floor(rows, _w(combo), None if b_ref is None else to_np(b_ref))
    # primal feasibility and optimality: min_t g_t . d reaches the dual optimum F*
    assert np.linalg.norm(d - g0) <= radius * (1 + REL) + slack, "cagrad: d outside the ball"
    worst = float((rows @ d).min())
    scale = float(np.linalg.norm(rows, axis=1).max()) * (np.linalg.norm(d) + slack)
    assert worst >= float(value) - REL * abs(float(value)) - FLOOR * scale, (
        f"cagrad: worst improvement {worst:.9e} below the optimum {float(value):.9e}"
    )
    if b_ref is not None:
        assert_close("cagrad", d, rows, to_np(b_ref), got_weights=_w(combo))
    assert _counters(strategy)["fallback_steps"] == 0.0


def check_nash_mtl(case: Case) -> None:
    strategy = create("nash_mtl", case)
    combo = combine(strategy, case)
    gram = _gram(case)
    weights = combo.weights.double().numpy()
    ref = convex.nash(gram, weights if np.all(weights > 0) else None)
    counts = _counters(strategy)
    if ref is None:  # no solution: the documented fallback (weights 1), counted
        assert counts == {"steps": 1.0, "solver_failures": 1.0, "fallback_steps": 1.0}, counts
        assert weights.tolist() == [1.0] * case.n_tasks
        return
    assert counts["solver_failures"] == 0.0, f"nash_mtl fell back on a solvable case: {counts}"
    a = to_np(ref)
    assert_close("nash_mtl", combo.gradient.double().numpy(), _rows(case), a, got_weights=_w(combo))
    g = to_np(gram)
    residual = np.abs(weights * (g @ weights) - 1.0)
    # float32 weights: (G a)_t carries eps32 (|G| |a|)_t of rounding
    slack = 1e-4 + FLOOR * weights * (np.abs(g) @ weights)
    assert (residual <= slack).all(), f"nash_mtl: G a != 1/a (residual {residual}, {slack})"


def check_imtl(case: Case) -> None:
    for variant in ("gradient", "hybrid"):
        strategy = create("imtl", case, variant=variant)
        combo = combine(strategy, case)
        a, zero = equations.imtl_g(_gram(case))
        d = combo.gradient.double().numpy()
        rows = _rows(case)
        if a is None:  # no solution: d = 0, counted
            assert _counters(strategy)["solver_failures"] == 1.0
            assert not d.any()
            continue
        ref = to_np(a)
        if zero:
            assert not d.any(), f"imtl: d = 0 solves IMTL-G here, got ||d|| = {np.linalg.norm(d)}"
        else:
            assert_close(f"imtl/{variant}", d, rows, ref, got_weights=_w(combo))
        norms = np.linalg.norm(rows, axis=1)
        live = norms > 0
        proj = rows[live] @ d / norms[live]
        slack = floor(rows, ref, _w(combo))
        spread = float(proj.max() - proj.min()) if len(proj) else 0.0
        assert spread <= REL * float(np.abs(proj).max(initial=0.0)) + 4 * slack, (
            f"imtl/{variant}: unequal projections {proj}"
        )
        assert abs(float(combo.weights.sum()) - 1.0) < 1e-4 or zero


def check_aligned_mtl(case: Case) -> None:
    combo = combine(create("aligned_mtl", case), case)
    a = to_np(equations.aligned(_gram(case)))
    assert_close(
        "aligned_mtl", combo.gradient.double().numpy(), _rows(case), a, got_weights=_w(combo)
    )


def check_pcgrad(case: Case) -> None:
    strategy = create("pcgrad", case)
    orders = copy.deepcopy(strategy).draw_orders()  # the orders this call will draw
    combo = combine(strategy, case)
    a = to_np(equations.pcgrad(_gram(case), orders))
    assert_close("pcgrad", combo.gradient.double().numpy(), _rows(case), a, got_weights=_w(combo))


def check_gradvac(case: Case) -> None:
    strategy = create("gradvac", case, beta=0.3)
    rng = np.random.default_rng(case.seed + 2)
    targets = rng.uniform(-0.5, 0.9, size=(case.n_tasks, case.n_tasks))
    strategy.get_buffer("targets").copy_(torch.as_tensor(targets))
    orders = copy.deepcopy(strategy).draw_orders()
    combo = combine(strategy, case)
    a, new = equations.gradvac(_gram(case), targets.tolist(), orders, 0.3)
    assert_close(
        "gradvac", combo.gradient.double().numpy(), _rows(case), to_np(a), got_weights=_w(combo)
    )
    got = strategy.get_buffer("targets").numpy()
    assert np.allclose(got, to_np(mp.matrix(new)), atol=1e-6), "gradvac: EMA of the cosines"


def check_graddrop(case: Case) -> None:
    strategy = create("graddrop", case)
    feats = features(case).double().numpy()
    uniform = torch.rand(feats.shape[1], generator=copy.deepcopy(strategy).generator).numpy()
    combo = combine(strategy, case)
    batch = feats.shape[0]
    grads = _rows(case).reshape(case.n_tasks, batch, -1)
    want = np.zeros_like(grads[0])
    for unit in range(feats.shape[1]):  # Chen et al. 2020, Alg. 1, one feature unit at a time
        signal = [float(np.sign(feats[:, unit]) @ grads[t, :, unit]) for t in range(case.n_tasks)]
        total = sum(abs(s) for s in signal)
        purity = 0.5 * (1 + sum(signal) / total) if total > 0 else 0.5
        for t, s in enumerate(signal):
            keep = (purity > uniform[unit] and s > 0) or (purity < uniform[unit] and s < 0)
            if keep:
                want[:, unit] += grads[t, :, unit]
    got = combo.gradient.double().numpy()
    bound = FLOOR * float(np.abs(grads).sum(axis=0).max(initial=0.0))
    assert np.abs(got - want.reshape(-1)).max() <= bound + 1e-12, "graddrop: masks differ"


def check_gradnorm(case: Case) -> None:
    strategy = create("gradnorm", case)
    rng = np.random.default_rng(case.seed + 3)
    w0 = rng.uniform(0.2, 3.0, size=case.n_tasks)
    l0 = case.losses * rng.uniform(0.5, 2.0, size=case.n_tasks)
    with torch.no_grad():
        strategy.loss_weights.copy_(torch.as_tensor(w0))
    strategy.get_buffer("initial_losses").copy_(torch.as_tensor(l0))
    strategy.get_buffer("has_initial").fill_(True)
    losses = torch.as_tensor(case.losses, dtype=torch.float32).requires_grad_(True)
    combo = strategy.combine_losses_with_gradients(losses, torch.as_tensor(case.rows))
    gram = _gram(case)
    n = case.n_tasks
    w = [mp.mpf(float(x)) for x in w0]
    w = [x * n / mp.fsum(w) for x in w]  # renormalised to sum T before use
    norms = [mp.sqrt(gram[t, t]) for t in range(n)]
    g = [w[t] * norms[t] for t in range(n)]
    g_bar = mp.fsum(g) / n
    ratio = [mp.mpf(float(case.losses[t])) / mp.mpf(float(l0[t])) for t in range(n)]
    rate = [r / (mp.fsum(ratio) / n) for r in ratio]
    target = [g_bar * r ** mp.mpf(1.5) for r in rate]
    l_grad = mp.fsum(abs(g[t] - target[t]) for t in range(n))
    assert combo.aux_loss is not None
    tol = REL * float(l_grad) + FLOOR * float(mp.fsum(g) + mp.fsum(target))
    assert abs(float(combo.aux_loss) - float(l_grad)) <= tol, "gradnorm: L_grad"
    assert np.allclose(combo.weights.double().numpy(), to_np(w), rtol=1e-6)
    combo.aux_loss.backward()
    grad = strategy.loss_weights.grad
    assert grad is not None
    want = [float(mp.sign(g[t] - target[t]) * norms[t]) for t in range(n)]  # target held fixed
    assert np.allclose(grad.double().numpy(), want, rtol=1e-4, atol=FLOOR * max(want, key=abs))


def check_db_mtl(case: Case) -> None:
    strategy = create("db_mtl", case)
    combo = combine(strategy, case)
    gram = _gram(case)
    beta, eps = mp.mpf(0.9), mp.mpf("1e-8")
    n = case.n_tasks
    # one step from ghat = 0: ghat_t = (1 - beta) g_t / (L_t + eps)
    scale = [(1 - beta) / (mp.mpf(float(np.float32(case.losses[t]))) + eps) for t in range(n)]
    norms = [scale[t] * mp.sqrt(gram[t, t]) for t in range(n)]
    top = max(norms)
    a = [scale[t] * top / norms[t] if norms[t] > 0 else mp.mpf(0) for t in range(n)]
    assert_close(
        "db_mtl", combo.gradient.double().numpy(), _rows(case), to_np(a), got_weights=_w(combo)
    )
    return None
