"""Formulas, invariants and awkward Jacobians for the gradient strategies."""

import itertools
import warnings

import cvxpy as cp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchjd.aggregation import CAGradWeighting

from mtlbench import weighting
from mtlbench.tasks import TASKS
from mtlbench.weighting._linalg import dual_cone_weights, gramian, min_norm_weights
from mtlbench.weighting.graddrop import graddrop_direction
from mtlbench.weighting.nash_mtl import nash_weights

GRADIENT_STRATEGIES = [
    n
    for n in weighting.available()
    if weighting.get(n).needs.name in ("REPRESENTATION", "SHARED_PARAMETERS")
]
LOSSES = torch.ones(3)


def _basis(m: int = 6, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(m, m)))
    return q.T  # orthonormal rows


U, V, W, X = _basis()[:4]


def _combine(name, jac, n_tasks=None, **kw):
    jac = torch.as_tensor(np.asarray(jac), dtype=torch.float32)
    tasks = TASKS[: jac.shape[0]] if n_tasks is None else TASKS[:n_tasks]
    strat = weighting.create(name, tasks, seed=0, **kw)
    features = jac.new_ones(1, jac.shape[1])  # a batch of one, all units active
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        combo = strat.combine_gradients(jac, LOSSES[: jac.shape[0]], features=features)
    return strat, combo


AWKWARD = {
    "zero_row": np.stack([U, 0 * U, V + 0.3 * U]),
    "opposite": np.stack([U, -U]),
    "aligned_1e-3_1e3": np.stack([1e-3 * U, 1e3 * U]),
    "rank_deficient": np.stack([U, V, U + V]),
    "t2_generic": np.stack([U, 0.5 * U + V]),
    "t3_generic": np.stack([U, -0.3 * U + V, 0.2 * U - 0.5 * V + W]),
}


@pytest.mark.parametrize("case", AWKWARD)
@pytest.mark.parametrize("name", GRADIENT_STRATEGIES)
def test_awkward_jacobians_give_finite_output_of_the_right_shape(name, case):
    jac = AWKWARD[case]
    _, combo = _combine(name, jac)
    assert combo.weights.shape == (len(jac),) and combo.gradient.shape == (jac.shape[1],)
    assert torch.isfinite(combo.weights).all() and torch.isfinite(combo.gradient).all()


# --- expected values on the awkward cases ------------------------------------------------------
EXPECTED_DIRECTION = {
    ("mgda", "zero_row"): 0 * U,
    ("mgda", "opposite"): 0 * U,
    ("mgda", "aligned_1e-3_1e3"): 1e-3 * U,  # the clamped closed form gives ~1.0 * U
    ("mgda", "rank_deficient"): 0.5 * (U + V),
    ("mgda", "t2_generic"): 0.6 * U + 0.4 * (0.5 * U + V),
    ("upgrad", "opposite"): 0 * U,
    ("upgrad", "aligned_1e-3_1e3"): 0.5 * (1e-3 + 1e3) * U,  # no conflict: the mean
    ("upgrad", "rank_deficient"): (2 * U + 2 * V) / 3,
    ("cagrad", "opposite"): 0 * U,
    ("cagrad", "aligned_1e-3_1e3"): 1.4 * 0.5 * (1e-3 + 1e3) * U,
    ("pcgrad", "opposite"): 0 * U,
    ("pcgrad", "aligned_1e-3_1e3"): (1e-3 + 1e3) * U,
    ("pcgrad", "rank_deficient"): 2 * U + 2 * V,
    ("gradvac", "opposite"): 0 * U,
    ("nash_mtl", "aligned_1e-3_1e3"): np.sqrt(2) * U,  # ||d||^2 = T
    ("imtl", "opposite"): 0 * U,
    ("aligned_mtl", "opposite"): 0 * U,
    ("mgda_ub", "aligned_1e-3_1e3"): 1e-3 * U,
}


@pytest.mark.parametrize(("name", "case"), list(EXPECTED_DIRECTION))
def test_awkward_cases_match_the_exact_answer(name, case):
    _, combo = _combine(name, AWKWARD[case])
    expected = EXPECTED_DIRECTION[(name, case)]
    scale = max(1.0, float(np.linalg.norm(expected)))
    assert np.allclose(combo.gradient.double().numpy(), expected, atol=2e-6 * scale, rtol=1e-5)


# --- MGDA ---------------------------------------------------------------------------------------
def _cvxpy_min_norm(jac: np.ndarray) -> float:
    a = cp.Variable(len(jac), nonneg=True)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(jac.T @ a)), [cp.sum(a) == 1])
    prob.solve(solver=cp.CLARABEL)
    return float(prob.value)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 4), st.integers(0, 10_000))
def test_mgda_is_the_exact_min_norm_point_and_conflicts_with_no_task(n, seed):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(n, 5)) * rng.choice([1e-3, 1.0, 1e3], size=(n, 1))
    a = min_norm_weights(jac @ jac.T)
    assert a.min() >= 0 and a.sum() == pytest.approx(1.0)
    d = a @ jac
    # never worse than an interior-point QP solver (which is the less accurate one at 1e-3..1e3)
    assert d @ d <= _cvxpy_min_norm(jac) * (1 + 1e-6) + 1e-12 * (jac**2).sum()
    # exact optimality (KKT): g_t . d >= ||d||^2 for every t, with equality where a_t > 0; so d
    # conflicts with no task gradient
    tol = 1e-9 * (jac**2).sum()
    assert (jac @ d >= d @ d - tol).all()
    assert np.allclose((jac @ d)[a > 1e-9], d @ d, atol=tol)


def test_mgda_two_task_closed_form():
    g1, g2 = np.array([1.0, 0.0]), np.array([0.0, 2.0])
    alpha = ((g2 - g1) @ g2) / ((g1 - g2) @ (g1 - g2))  # 4/5
    _, combo = _combine("mgda", np.stack([g1, g2]))
    assert combo.weights.tolist() == pytest.approx([alpha, 1 - alpha])


# --- PCGrad / GradVac ----------------------------------------------------------------------------
def test_pcgrad_equals_sum_without_conflict():
    jac = np.stack([U, U + V, 0.5 * V + W])
    _, combo = _combine("pcgrad", jac)
    assert combo.weights.tolist() == [1.0, 1.0, 1.0]
    assert np.allclose(combo.gradient.numpy(), jac.sum(0), atol=1e-6)


def test_pcgrad_two_task_projection_by_hand():
    g1, g2 = np.array([1.0, 0.0]), np.array([-1.0, 1.0])
    # g1' = g1 - (g1.g2/|g2|^2) g2 = (.5, .5); g2' = g2 - (g2.g1/|g1|^2) g1 = (0, 1)
    _, combo = _combine("pcgrad", np.stack([g1, g2]))
    assert combo.gradient.tolist() == pytest.approx([0.5, 1.5])
    assert combo.weights.tolist() == pytest.approx([2.0, 1.5])


def test_pcgrad_order_comes_from_the_seed():
    jac = torch.tensor(np.stack([U, -0.9 * U + 0.2 * V, -0.5 * U - 0.8 * V]), dtype=torch.float32)
    results = set()
    for seed in range(8):
        strat = weighting.create("pcgrad", TASKS, seed=seed)
        torch.manual_seed(seed)
        a = strat.combine_gradients(jac, LOSSES).weights
        torch.manual_seed(1000 + seed)  # the global RNG has no say
        again = weighting.create("pcgrad", TASKS, seed=seed).combine_gradients(jac, LOSSES).weights
        assert torch.equal(a, again)
        results.add(tuple(round(v, 5) for v in a.tolist()))
    assert len(results) > 1  # the order matters on these conflicting gradients


def test_gradvac_with_zero_targets_first_step_equals_pcgrad():
    jac = np.stack([np.array([1.0, 0.0]), np.array([-1.0, 1.0])])
    _, gv = _combine("gradvac", jac)
    _, pc = _combine("pcgrad", jac)
    assert torch.allclose(gv.gradient, pc.gradient)


def test_gradvac_raises_the_cosine_to_its_target_and_updates_the_ema():
    strat = weighting.create("gradvac", TASKS[:2], seed=0)
    strat.targets.fill_(0.5)
    jac = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cosine 0 < 0.5
    combo = strat.combine_gradients(jac, LOSSES[:2])
    # g1' = g1 + w g2 with w = |g1|(0.5*1 - 0)/(|g2| sqrt(0.75)); cos(g1', g2) = 0.5
    w = 0.5 / np.sqrt(0.75)
    assert combo.weights.tolist() == pytest.approx([1 + w, 1 + w], rel=1e-6)
    assert strat.targets[0, 1].item() == pytest.approx(0.99 * 0.5 + 0.01 * 0.0)


# --- CAGrad -------------------------------------------------------------------------------------
def test_cagrad_matches_torchjd_on_well_conditioned_input():
    jac = AWKWARD["t3_generic"]
    _, combo = _combine("cagrad", jac)
    ref = CAGradWeighting(c=0.4)(torch.tensor(jac @ jac.T)).numpy() @ jac
    assert np.allclose(combo.gradient.double().numpy(), ref, rtol=1e-5, atol=1e-6)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0.2, 0.4, 0.9]))
def test_cagrad_maximises_the_worst_improvement_in_its_ball(seed, c):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(3, 4))
    _, combo = _combine("cagrad", jac, overrides=[f"cagrad.c={c}"])
    d = combo.gradient.double().numpy()
    g0 = jac.mean(0)
    radius = c * np.linalg.norm(g0)
    assert np.linalg.norm(d - g0) <= radius * (1 + 1e-5) + 1e-7
    best = (jac @ d).min()
    for _ in range(200):  # no random point of the ball does better
        step = rng.normal(size=4)
        cand = g0 + radius * rng.uniform() ** 0.25 * step / np.linalg.norm(step)
        assert (jac @ cand).min() <= best + 1e-5


def test_cagrad_with_c_zero_is_the_mean():
    _, combo = _combine("cagrad", AWKWARD["t3_generic"], overrides=["cagrad.c=0"])
    assert combo.weights.tolist() == pytest.approx([1 / 3] * 3)


def test_cagrad_counts_solver_failures_and_reuses_its_last_weights(monkeypatch):
    strat, first = _combine("cagrad", AWKWARD["t3_generic"])
    monkeypatch.setattr(strat, "solve_weights", lambda gram: None)
    jac = torch.tensor(AWKWARD["t3_generic"], dtype=torch.float32)
    with pytest.warns(RuntimeWarning, match="solver failed"):
        combo = strat.combine_gradients(jac, LOSSES)
    assert strat.diagnostics() == {"steps": 2.0, "solver_failures": 1.0, "fallback_steps": 1.0}
    assert torch.equal(combo.weights, first.weights)


# --- Nash-MTL -----------------------------------------------------------------------------------
def test_nash_diagonal_case_by_hand():
    a = nash_weights(np.diag([1.0, 4.0]))
    assert a.tolist() == pytest.approx([1.0, 0.5], rel=1e-9)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_nash_solves_the_bargaining_equations_and_matches_cvxpy(seed):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(3, 6)) + 2.0 * rng.normal(size=6)  # a common direction: solvable
    gram = jac @ jac.T
    a = nash_weights(gram)
    assert a is not None
    assert np.allclose(a * (gram @ a), 1.0, atol=1e-8)
    x = cp.Variable(3)
    obj = 0.5 * cp.quad_form(x, cp.psd_wrap(gram)) - cp.sum(cp.log(x))
    cp.Problem(cp.Minimize(obj)).solve(solver=cp.CLARABEL)
    assert np.allclose(a, x.value, rtol=1e-3)  # cvxpy is the less accurate of the two


@pytest.mark.parametrize("case", ["zero_row", "opposite"])
def test_nash_reports_and_counts_failures_instead_of_silently_keeping_weights(case):
    strat = weighting.create("nash_mtl", TASKS[: len(AWKWARD[case])])
    jac = torch.tensor(AWKWARD[case], dtype=torch.float32)
    with pytest.warns(RuntimeWarning, match="no Nash bargaining solution"):
        combo = strat.combine_gradients(jac, LOSSES[: len(jac)])
    assert strat.diagnostics() == {"steps": 1.0, "solver_failures": 1.0, "fallback_steps": 1.0}
    assert combo.weights.tolist() == [1.0] * len(jac)  # the official initial weights


def test_nash_max_norm_clips_the_direction():
    _, combo = _combine("nash_mtl", AWKWARD["t2_generic"], overrides=["nash_mtl.max_norm=0.5"])
    assert combo.gradient.norm().item() == pytest.approx(0.5, rel=1e-5)


# --- UPGrad -------------------------------------------------------------------------------------
def _cvxpy_dual_cone(gram: np.ndarray, u: np.ndarray) -> np.ndarray:
    v = cp.Variable(len(u))
    cp.Problem(cp.Minimize(cp.quad_form(v, cp.psd_wrap(gram))), [v >= u]).solve(solver=cp.CLARABEL)
    return v.value


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 4), st.integers(0, 10_000))
def test_upgrad_projection_is_exact_and_never_conflicts(n, seed):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(n, 5)) * rng.choice([1e-2, 1.0, 1e2], size=(n, 1))
    gram = jac @ jac.T
    for i in range(n):
        u = np.eye(n)[i] / n
        v = dual_cone_weights(gram, u)
        ref = _cvxpy_dual_cone(gram / np.trace(gram), u)
        assert v @ gram @ v <= ref @ gram @ ref * (1 + 1e-6) + 1e-12 * np.trace(gram)
        # exact optimality (KKT): v >= u, G v >= 0, and (G v)_t = 0 wherever v_t > u_t
        tol = 1e-9 * np.trace(gram) * np.abs(v).max()
        assert (v >= u - 1e-12).all() and (gram @ v >= -tol).all()
        assert np.allclose((gram @ v)[v > u + 1e-9], 0.0, atol=tol)
    _, combo = _combine("upgrad", jac, n_tasks=n)
    d = combo.gradient.double().numpy()
    assert (jac @ d >= -1e-5 * np.linalg.norm(jac) * np.linalg.norm(d)).all()


def test_upgrad_is_the_mean_without_conflict():
    _, combo = _combine("upgrad", np.stack([U, U + V, V + W]))
    assert combo.weights.tolist() == pytest.approx([1 / 3] * 3, rel=1e-6)


# --- IMTL and Aligned-MTL -----------------------------------------------------------------------
def test_imtl_gradient_variant_has_equal_projections_on_unit_gradients():
    jac = AWKWARD["t3_generic"] * np.array([[1.0], [10.0], [0.1]])
    _, combo = _combine("imtl", jac, overrides=["imtl.variant=gradient"])
    d = combo.gradient.double().numpy()
    proj = (jac / np.linalg.norm(jac, axis=1, keepdims=True)) @ d
    assert np.allclose(proj, proj[0], rtol=1e-5)
    assert combo.weights.sum().item() == pytest.approx(1.0)


def test_imtl_hybrid_scales_losses_and_trains_the_scales():
    strat = weighting.create("imtl", TASKS)
    with torch.no_grad():
        strat.log_scales.copy_(torch.tensor([0.0, np.log(2.0), 0.0]))
    jac = torch.tensor(AWKWARD["t3_generic"], dtype=torch.float32)
    losses = torch.tensor([2.0, 0.5, 1.0])
    combo = strat.combine_gradients(jac, losses)
    scaled = jac * torch.tensor([[1.0], [2.0], [1.0]])
    _, ref = _combine("imtl", scaled.numpy(), overrides=["imtl.variant=gradient"])
    assert torch.allclose(combo.weights, ref.weights * torch.tensor([1.0, 2.0, 1.0]), rtol=1e-5)
    combo.aux_loss.backward()  # d/ds (e^s L - s) = e^s L - 1
    assert strat.log_scales.grad.tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_aligned_mtl_matches_an_independent_eigendecomposition():
    jac = AWKWARD["t3_generic"] * np.array([[1.0], [3.0], [0.2]])
    lam, vec = np.linalg.eigh(jac @ jac.T)
    expected = np.sqrt(lam.min()) * vec @ np.diag(lam**-0.5) @ vec.T @ np.ones(3)
    _, combo = _combine("aligned_mtl", jac)
    assert np.allclose(combo.weights.double().numpy(), expected, rtol=1e-5)
    aligned = np.sqrt(lam.min()) * vec @ np.diag(lam**-0.5) @ vec.T @ jac
    assert np.allclose(aligned @ aligned.T, lam.min() * np.eye(3), atol=1e-9)


# --- GradDrop and DB-MTL ------------------------------------------------------------------------
def test_graddrop_masks_by_hand():
    features = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # sign(A): unit 1 inactive in sample 2
    g1 = torch.tensor([[0.5, 2.0], [0.5, 7.0]])  # per-sample grads [B, D] of task 1
    g2 = torch.tensor([[0.25, -1.0], [0.75, 5.0]])
    jac = torch.stack([g1.reshape(-1), g2.reshape(-1)])
    # signals: unit 0: S1 = 1, S2 = 1 (P = 1); unit 1: S1 = 2, S2 = -1 (P = 2/3)
    keep_positive = graddrop_direction(jac, features, torch.tensor([0.5, 0.5]))
    assert keep_positive.reshape(2, 2).tolist() == [[0.75, 2.0], [1.25, 7.0]]
    keep_negative = graddrop_direction(jac, features, torch.tensor([0.5, 0.9]))
    assert keep_negative.reshape(2, 2).tolist() == [[0.75, -1.0], [1.25, 5.0]]


def test_db_mtl_two_steps_by_hand():
    strat = weighting.create("db_mtl", TASKS[:2])
    jac = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    losses = torch.tensor([1.0, 1.0])
    first = strat.combine_gradients(jac, losses)
    # ghat = 0.1 * g / L = (.3, 0), (0, .1); scaled to the largest norm: (.3, 0) + 3 (0, .1)
    assert first.gradient.tolist() == pytest.approx([0.3, 0.3], rel=1e-6)
    assert first.weights.tolist() == pytest.approx([1.0, 1.0])
    second = strat.combine_gradients(jac, losses)  # ghat = .9 ghat + .1 g
    assert second.gradient.tolist() == pytest.approx([0.57, 0.57], rel=1e-6)
    half = weighting.create("db_mtl", TASKS[:2]).combine_gradients(jac, torch.tensor([2.0, 1.0]))
    assert half.weights.tolist() == pytest.approx([0.5, 1.0])  # heads get grad log L


# --- symmetry -----------------------------------------------------------------------------------
SYMMETRIC = ["mgda", "mgda_ub", "upgrad", "cagrad", "nash_mtl", "imtl", "aligned_mtl", "db_mtl"]


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.permutations([0, 1, 2]))
def test_symmetric_methods_are_permutation_equivariant(seed, perm):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=(3, 5)) + rng.normal(size=5)
    for name in SYMMETRIC:
        _, a = _combine(name, jac)
        _, b = _combine(name, jac[perm])
        assert torch.allclose(a.weights[perm], b.weights, rtol=1e-4, atol=1e-6), name
        assert torch.allclose(a.gradient, b.gradient, rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize("name", ["sum", "mean", "gls", "famo", "dwa", "static", "rlw"])
def test_symmetric_loss_methods_are_permutation_equivariant(name):
    # (uncertainty is not symmetric: regression and classification tasks get different forms)
    losses = torch.tensor([0.3, 2.0, 1.1])
    for perm in itertools.permutations(range(3)):
        wa = weighting.create(name, TASKS, seed=0).combine_losses(losses).weights
        wb = weighting.create(name, TASKS, seed=0).combine_losses(losses[list(perm)]).weights
        if name == "rlw":  # same draws, so the same weights whatever the loss order
            assert torch.equal(wa, wb)
        else:
            assert torch.allclose(wa[list(perm)], wb), (name, perm)


def test_gramian_is_float64_and_chunked_exactly():
    jac = torch.randn(3, (1 << 20) + 7)
    got = gramian(jac)
    assert got.dtype == torch.float64
    assert torch.allclose(got, jac.double() @ jac.double().T, rtol=1e-12)
