"""Wave-2 gradient strategies (issue 12) against references computed here, independently, from
each method's defining problem: exact rationals (``fractions``) or 60-digit ``mpmath``, in the
regimes of issue 10 (random, conflicting, aligned, norms spanning 1e-4..1e4 mixed and aligned, a
zero row, exact rank deficiency, duplicated rows, opposite rows of unequal norm), T = 2..6 and
widths up to 10^4.

Jacobians have small-integer entries times a power of two per row, so they are exact in float32
and their Gramian is exact in float64 and in rationals: the reference and the strategy see the
same problem, and an exactly rank-deficient Jacobian stays exactly rank-deficient.
"""

from __future__ import annotations

import itertools
import warnings
from fractions import Fraction

import mpmath as mp
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mtlbench import weighting
from mtlbench.mtl.tasks import TASKS, Task
from mtlbench.weighting.conflict_free import config_weights
from mtlbench.weighting.fairgrad import fairgrad_weights
from mtlbench.weighting.sdmgrad import sdmgrad_inner

mp.mp.dps = 60
REGIMES = (
    "random",
    "conflicting",
    "aligned",
    "norms_mixed",
    "norms_aligned",
    "zero_row",
    "rank_deficient",
    "duplicated",
    "opposite_unequal",
)


def _tasks(n: int) -> tuple[Task, ...]:
    """n tasks (the three UTKFace tasks repeated: the gradient methods only count them)."""
    return tuple(TASKS[i % len(TASKS)] for i in range(n))


def regime_jacobian(regime: str, n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ints, exps)``: row t of the Jacobian is ``ints[t] * 2**exps[t]``."""
    rng = np.random.default_rng(seed)
    ints = rng.integers(-8, 9, size=(n, m))
    exps = np.zeros(n, dtype=np.int64)
    base = rng.integers(-8, 9, size=m)
    base[0] = 5  # never the zero vector
    if regime == "conflicting":
        for t in range(1, n, 2):
            ints[t] = -ints[t - 1] + rng.integers(-2, 3, size=m)
    elif regime == "aligned":
        ints = 8 * base[None, :] + rng.integers(-2, 3, size=(n, m))
    elif regime == "norms_mixed":
        exps = rng.integers(-13, 14, size=n)
        exps[0], exps[-1] = -13, 13  # 1e-4 .. 1e4
    elif regime == "norms_aligned":
        ints = np.repeat(base[None, :], n, axis=0)
        exps = rng.integers(-13, 14, size=n)
        exps[0], exps[-1] = -13, 13
    elif regime == "zero_row":
        ints[rng.integers(n)] = 0
    elif regime == "rank_deficient":
        if n >= 3:
            ints[-1] = ints[0] + ints[1]
        else:
            ints[1] = 3 * ints[0]
    elif regime == "duplicated":
        ints[1] = ints[0]
    elif regime == "opposite_unequal":
        ints[1] = -2 * ints[0]
    return ints.astype(np.int64), exps.astype(np.int64)


def as_float(ints: np.ndarray, exps: np.ndarray) -> np.ndarray:
    return ints.astype(np.float64) * np.exp2(exps.astype(np.float64))[:, None]


def exact_gramian(ints: np.ndarray, exps: np.ndarray) -> list[list[Fraction]]:
    dots = ints @ ints.T  # exact: |entries| <= 24, width <= 10^4
    n = len(ints)
    return [
        [Fraction(int(dots[i, j])) * Fraction(2) ** int(exps[i] + exps[j]) for j in range(n)]
        for i in range(n)
    ]


def to_mp(matrix: list[list[Fraction]]) -> mp.matrix:
    return mp.matrix([[mp.mpf(x.numerator) / x.denominator for x in row] for row in matrix])


def solve_exact(a: list[list[Fraction]], b: list[Fraction]) -> list[Fraction] | None:
    """Gaussian elimination in rationals; None when ``a`` is singular."""
    n = len(b)
    rows = [[*r, b[i]] for i, r in enumerate(a)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if rows[r][col] != 0), None)
        if pivot is None:
            return None
        rows[col], rows[pivot] = rows[pivot], rows[col]
        for r in range(n):
            if r != col and rows[r][col] != 0:
                f = rows[r][col] / rows[col][col]
                rows[r] = [x - f * y for x, y in zip(rows[r], rows[col], strict=True)]
    return [rows[i][n] / rows[i][i] for i in range(n)]


def independent_rows(gram: list[list[Fraction]]) -> list[int]:
    """A maximal set of linearly independent task gradients (exact)."""
    chosen: list[int] = []
    for i in range(len(gram)):
        trial = [*chosen, i]
        sub = [[gram[a][b] for b in trial] for a in trial]
        if solve_exact(sub, [Fraction(0)] * len(trial)) is not None:
            chosen = trial
    return chosen


def min_norm_hull_is_zero(gram: list[list[Fraction]]) -> bool:
    """Whether 0 is in the convex hull of the task gradients (exact KKT enumeration): then no
    direction improves every task."""
    n = len(gram)
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            s = list(support)
            # minimise a^T G a on the face: [G_SS 1; 1^T 0] [a; -nu] = [0; 1]
            kkt = [[gram[i][j] for j in s] + [Fraction(1)] for i in s]
            kkt.append([Fraction(1)] * size + [Fraction(0)])
            sol = solve_exact(kkt, [Fraction(0)] * size + [Fraction(1)])
            if sol is None or min(sol[:size]) < 0:
                continue
            a = [Fraction(0)] * n
            for i, v in zip(s, sol[:size], strict=True):
                a[i] = v
            value = sum(a[i] * gram[i][j] * a[j] for i in range(n) for j in range(n))
            if value == 0:
                return True
    return False


def g_norm(gram_mp: mp.matrix, coef: list) -> mp.mpf:
    """``||J^T coef||`` from the exact Gramian."""
    n = gram_mp.rows
    c = [
        mp.mpf(x) if not isinstance(x, Fraction) else mp.mpf(x.numerator) / x.denominator
        for x in coef
    ]
    return mp.sqrt(
        max(mp.mpf(0), sum(c[i] * gram_mp[i, j] * c[j] for i in range(n) for j in range(n)))
    )


def assert_same_direction(gram: list[list[Fraction]], got: np.ndarray, ref: list) -> None:
    """``||J^T (got - ref)|| <= 1e-4 ||J^T ref|| + float32 floor`` (1e-6 sum_t |ref_t| ||g_t||)."""
    gm = to_mp(gram)
    refm = [
        mp.mpf(x.numerator) / x.denominator if isinstance(x, Fraction) else mp.mpf(x) for x in ref
    ]
    diff = [mp.mpf(float(g)) - r for g, r in zip(got, refm, strict=True)]
    err = g_norm(gm, diff)
    floor = sum(abs(r) * mp.sqrt(gm[i, i]) for i, r in enumerate(refm)) * mp.mpf("1e-6")
    bound = mp.mpf("1e-4") * g_norm(gm, refm) + floor
    assert err <= bound, (float(err), float(bound), got.tolist(), [float(r) for r in refm])


def combine(name: str, ints: np.ndarray, exps: np.ndarray, **hp):
    jac = torch.as_tensor(as_float(ints, exps), dtype=torch.float32)
    strategy = weighting.get(name)(_tasks(len(ints)), seed=0, **hp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        combo = strategy.combine_gradients(jac, torch.ones(len(ints)))
    assert torch.isfinite(combo.weights).all() and torch.isfinite(combo.gradient).all()
    return strategy, combo


cases = st.tuples(
    st.sampled_from(REGIMES),
    st.integers(2, 6),
    st.sampled_from([8, 64, 10_000]),
    st.integers(0, 10_000),
)
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)


# --- DualProj: argmin ||d - mean||^2 s.t. g_t . d >= 0 ------------------------------------------
def dualproj_reference(gram: list[list[Fraction]]) -> list[Fraction]:
    """KKT of the primal: ``d = g_mean + J^T mu``, ``mu >= 0``, ``J d >= 0``, complementary;
    enumerated over active sets with independent rows (Caratheodory), exactly."""
    n = len(gram)
    u = [Fraction(1, n)] * n
    gu = [sum(gram[i][j] * u[j] for j in range(n)) for i in range(n)]
    for size in range(n + 1):
        for active in itertools.combinations(range(n), size):
            a = list(active)
            mu_a = solve_exact([[gram[i][j] for j in a] for i in a], [-gu[i] for i in a])
            if mu_a is None or (mu_a and min(mu_a) < 0):
                continue
            v = list(u)
            for i, m in zip(a, mu_a, strict=True):
                v[i] += m
            if all(sum(gram[i][j] * v[j] for j in range(n)) >= 0 for i in range(n)):
                return v
    raise AssertionError("no KKT point: impossible for a projection onto a closed convex cone")


@SETTINGS
@given(cases)
def test_dualproj_is_the_exact_projection_and_conflicts_with_no_task(case):
    regime, n, m, seed = case
    ints, exps = regime_jacobian(regime, n, m, seed)
    _, combo = combine("dualproj", ints, exps)
    gram = exact_gramian(ints, exps)
    assert_same_direction(gram, combo.weights.double().numpy(), dualproj_reference(gram))
    jac = as_float(ints, exps)
    d = combo.gradient.double().numpy()
    for g in jac:  # invariant: no conflict with any task
        assert g @ d >= -1e-5 * np.linalg.norm(g) * np.linalg.norm(d)


def test_dualproj_matches_torchjd_default_on_well_conditioned_input():
    from torchjd.aggregation import DualProjWeighting

    rng = np.random.default_rng(3)
    jac = rng.normal(size=(3, 20))
    jac[1] = -0.8 * jac[0] + 0.3 * rng.normal(size=20)  # a real conflict: projection active
    _, combo = combine_float("dualproj", jac)
    peer = DualProjWeighting()(torch.as_tensor(jac @ jac.T)).numpy()
    assert np.allclose(combo.weights.numpy(), peer, rtol=2e-3, atol=1e-5)


def combine_float(name: str, jac: np.ndarray, **hp):
    strategy = weighting.get(name)(_tasks(len(jac)), seed=0, **hp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        combo = strategy.combine_gradients(
            torch.as_tensor(jac, dtype=torch.float32), torch.ones(len(jac))
        )
    return strategy, combo


# --- ConFIG: g_u = pinv(U) 1, d = (sum_t g_t . e) e ----------------------------------------------
def config_reference(gram: list[list[Fraction]]) -> list[mp.mpf]:
    """From the definition, in 60 digits: ``x = pinv(U) 1`` is the least-squares solution of
    ``U x = 1`` in the row space of U; with ``x = U_B^T z`` over independent rows B the normal
    equations are ``(G^_B: G^_:B) z = G^_B: 1``."""
    n = len(gram)
    gm = to_mp(gram)
    norms = [mp.sqrt(gm[i, i]) for i in range(n)]
    nonzero = [i for i in range(n) if gram[i][i] != 0]
    basis = independent_rows([[gram[i][j] for j in range(n)] for i in range(n)])
    basis = [b for b in basis if b in nonzero]
    if not basis:
        return [mp.mpf(0)] * n
    unit = mp.matrix(n, n)
    for i in nonzero:
        for j in nonzero:
            unit[i, j] = gm[i, j] / (norms[i] * norms[j])
    k = len(basis)
    normal = mp.matrix(k, k)
    rhs = mp.matrix(k, 1)
    for a, i in enumerate(basis):
        rhs[a] = sum(unit[i, t] for t in range(n))
        for b, j in enumerate(basis):
            normal[a, b] = sum(unit[i, t] * unit[t, j] for t in range(n))
    z = mp.lu_solve(normal, rhs)
    sq = sum(z[a] * unit[i, j] * z[b] for a, i in enumerate(basis) for b, j in enumerate(basis))
    length = sum(norms[t] * sum(unit[t, i] * z[a] for a, i in enumerate(basis)) for t in range(n))
    coef = [mp.mpf(0)] * n
    if sq < mp.mpf("1e-50"):  # pinv(U) 1 = 0 (e.g. opposite rows): the update is zero
        return coef
    for a, i in enumerate(basis):
        coef[i] = z[a] / norms[i] * length / sq
    return coef


@SETTINGS
@given(cases)
def test_config_matches_its_definition_and_has_equal_unit_projections(case):
    regime, n, m, seed = case
    ints, exps = regime_jacobian(regime, n, m, seed)
    gram = exact_gramian(ints, exps)
    # ConFIG's pseudo-inverse is discontinuous at rank deficiency (by definition): inputs within
    # 1e-5 of it are not tested, exact deficiency is.
    g = np.array([[float(x) for x in r] for r in gram])
    norms = np.sqrt(np.diag(g))
    nz = norms > 0
    unit = g[np.ix_(nz, nz)] / np.outer(norms[nz], norms[nz])
    ev = np.linalg.eigvalsh(unit)
    exact_rank = len([b for b in independent_rows(gram) if gram[b][b] != 0])
    assume(exact_rank < nz.sum() or ev.min() > 1e-3 * ev.max())
    _, combo = combine("config", ints, exps)
    ref = config_reference(gram)
    assert_same_direction(gram, combo.weights.double().numpy(), ref)
    if exact_rank == nz.sum():  # full rank: U d is the same positive number for every task
        jac = as_float(ints, exps)[nz]
        proj = (jac / np.linalg.norm(jac, axis=1, keepdims=True)) @ combo.gradient.double().numpy()
        assert np.allclose(proj, proj.mean(), rtol=1e-4, atol=1e-6 * np.abs(proj).max())
        assert proj.min() >= 0


def test_config_matches_torchjd():
    from torchjd.aggregation import ConFIG

    rng = np.random.default_rng(0)
    for case in range(5):
        jac = rng.normal(size=(3, 12)) * np.array([[1.0], [10.0], [0.1]])
        if case % 2:
            jac[1] = -jac[0] + 0.5 * rng.normal(size=12)
        _, combo = combine_float("config", jac)
        peer = ConFIG()(torch.as_tensor(jac))
        assert torch.allclose(combo.gradient.double(), peer, rtol=1e-4, atol=1e-6)


def test_config_on_awkward_rows_by_hand():
    u = np.eye(4)[0]
    # opposite unequal rows: U = [u; -u] has rank one, pinv(U) 1 = 0: the update is zero
    assert np.allclose(config_weights(np.array([[1.0, -2.0], [-2.0, 4.0]])), 0.0)
    # aligned 1e-3 / 1e3: unit rows equal, g_u = u, length = 1e-3 + 1e3, d = (1e-3 + 1e3) u
    jac = np.stack([1e-3 * u, 1e3 * u])
    a = config_weights(jac @ jac.T)
    assert np.allclose(a @ jac, (1e-3 + 1e3) * u, rtol=1e-12)


# --- FairGrad: G w = w^(-1/alpha), w > 0 -------------------------------------------------------
def fairgrad_reference(gram: list[list[Fraction]], alpha: float, near: np.ndarray) -> list[mp.mpf]:
    """Damped Newton on the residual equations ``w^(1/alpha) (G w) - 1 = 0`` in 60 digits,
    started 0.1% away from ``near``. The root is unique (it minimises a strictly convex
    potential), so wherever Newton converges to a positive root with residual < 1e-40, that is
    the answer."""
    n = len(gram)
    gm = to_mp(gram)
    p = 1 / mp.mpf(alpha)
    w = mp.matrix(
        [
            mp.mpf(float(x)) * (mp.mpf("1.001") if i % 2 else mp.mpf("0.999"))
            for i, x in enumerate(near)
        ]
    )

    def residual(x: mp.matrix) -> mp.matrix:
        gx = gm * x
        return mp.matrix([(gx[i] * x[i] ** p - 1) for i in range(n)])  # scaled per row

    r = residual(w)
    for _ in range(500):
        if mp.norm(r, mp.inf) < mp.mpf("1e-40"):
            return [w[i] for i in range(n)]
        gx = gm * w
        jac = mp.matrix(n, n)
        for i in range(n):
            for j in range(n):
                jac[i, j] = gm[i, j] * w[i] ** p
            jac[i, i] += gx[i] * p * w[i] ** (p - 1)
        step = mp.lu_solve(jac, r)
        t = mp.mpf(1)
        while True:
            cand = w - t * step
            if min(cand) > 0 and mp.norm(residual(cand), mp.inf) < mp.norm(r, mp.inf):
                break
            t /= 2
            assert t > mp.mpf("1e-30"), "reference Newton stalled"
        w, r = cand, residual(cand)
    raise AssertionError("reference Newton did not converge")


@SETTINGS
@given(cases, st.sampled_from([0.5, 1.0, 2.0]))
def test_fairgrad_solves_its_equations_or_reports_failure(case, alpha):
    regime, n, m, seed = case
    ints, exps = regime_jacobian(regime, n, m, seed)
    gram = exact_gramian(ints, exps)
    strategy, combo = combine("fairgrad", ints, exps, alpha=alpha)
    if min_norm_hull_is_zero(gram):  # no direction improves every task: no solution exists
        assert strategy.diagnostics()["solver_failures"] == 1.0
        assert torch.allclose(combo.weights, torch.full((n,), 1.0 / n))  # the documented reuse
        return
    assert strategy.diagnostics()["solver_failures"] == 0.0
    ref = fairgrad_reference(gram, alpha, combo.weights.double().numpy())
    got = combo.weights.double().numpy()
    for g, r in zip(got, ref, strict=True):
        assert abs(mp.mpf(float(g)) - r) <= mp.mpf("1e-4") * r, (got, ref)


def test_fairgrad_matches_torchjd_on_well_conditioned_input():
    from torchjd.aggregation import FairGradWeighting

    rng = np.random.default_rng(1)
    jac = rng.normal(size=(3, 10)) + rng.normal(size=10)
    gram = jac @ jac.T
    for alpha in (0.5, 1.0, 2.0):
        ours = fairgrad_weights(gram, alpha)
        peer = FairGradWeighting(alpha)(torch.as_tensor(gram)).numpy()
        assert ours is not None and np.allclose(ours, peer, rtol=1e-4)


def test_fairgrad_alpha_zero_is_the_mean():
    assert np.allclose(fairgrad_weights(np.eye(3), 0.0), 1 / 3)


# --- MoDo and SDMGrad: per-sample Gramians ------------------------------------------------------
def three_samples(regime: str, n: int, m: int, seed: int):
    parts = [regime_jacobian(regime, n, m, seed + s) for s in range(3)]
    ints = np.concatenate([p[0] for p in parts])
    exps = np.concatenate([p[1] for p in parts])
    return ints, exps


def project_reference(v: list[mp.mpf]) -> list[mp.mpf]:
    """Projection onto the simplex from its KKT conditions, by enumerating supports."""
    n = len(v)
    for size in range(n, 0, -1):
        for support in itertools.combinations(range(n), size):
            theta = (sum(v[i] for i in support) - 1) / size
            w = [v[i] - theta if i in support else mp.mpf(0) for i in range(n)]
            if all(w[i] >= 0 for i in support) and all(
                v[i] - theta <= 0 for i in range(n) if i not in support
            ):
                return w
    raise AssertionError("no simplex projection")


@settings(max_examples=20, deadline=None)
@given(cases, st.floats(1e-4, 1e-1), st.floats(0.0, 1.0))
def test_modo_weight_steps_match_a_60_digit_recursion(case, gamma, rho):
    regime, n, m, seed = case
    strategy = weighting.get("modo")(_tasks(n), seed=0, gamma=gamma, rho=rho)
    lam = [mp.mpf(1) / n] * n
    for step in range(3):
        ints, exps = three_samples(regime, n, m, seed + 10 * step)
        gram = exact_gramian(ints, exps)
        # scale-free step: the cross-Gramian divided by its largest entry (a pure step-size test)
        top = max(abs(x) for row in gram for x in row) or Fraction(1)
        gram = [[x / top for x in row] for row in gram]
        got = strategy.sample_gramian_weights(
            torch.as_tensor([[float(x) for x in r] for r in gram], dtype=torch.float64),
            torch.ones(3, n),
        )
        gm = to_mp(gram)
        cross = [[gm[i, n + j] for j in range(n)] for i in range(n)]  # J_1 J_2^T
        grad = [sum(cross[i][j] * lam[j] for j in range(n)) + rho * lam[i] for i in range(n)]
        lam = project_reference([lam[i] - gamma * grad[i] for i in range(n)])
        assert got.shared[:2].abs().max() == 0  # samples 1 and 2 only steer the weights
        assert np.allclose(got.shared[2].numpy(), [float(x) for x in lam], rtol=1e-6, atol=1e-7)
        assert np.allclose(got.weights.numpy(), got.shared[2].numpy())


def test_modo_matches_torchjd():
    from torchjd.aggregation import MoDoWeighting

    rng = np.random.default_rng(2)
    ours = weighting.get("modo")(TASKS, seed=0, gamma=0.05, rho=0.1)
    peer = MoDoWeighting(gamma=0.05, rho=0.1)
    for _ in range(4):
        jacs = rng.normal(size=(9, 7))
        gram = jacs @ jacs.T
        got = ours.sample_gramian_weights(torch.as_tensor(gram), torch.ones(3, 3)).weights
        want = peer(torch.as_tensor(gram[0:3, 3:6]))
        assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-7)


def sdmgrad_reference(cross: list[list[mp.mpf]], w: list[mp.mpf], lamda, n_iter, lr):
    """The paper's inner problem ``min_w 1/2 ||J (w + lamda/T)||^2`` on the simplex, solved by
    the official projected momentum SGD on ``A / s^2`` (``s`` = mean of ``sqrt(|A_tt|)``), in
    60 digits."""
    n = len(w)
    s = (sum(mp.sqrt(abs(cross[i][i])) for i in range(n)) / n) ** 2
    if s == 0:
        s = max(abs(x) for row in cross for x in row)
    if s == 0:
        return w
    a = [[cross[i][j] / s for j in range(n)] for i in range(n)]
    vel = [mp.mpf(0)] * n
    for it in range(n_iter):
        grad = [sum(a[i][j] * (w[j] + lamda / n) for j in range(n)) for i in range(n)]
        vel = grad if it == 0 else [mp.mpf("0.5") * v + g for v, g in zip(vel, grad, strict=True)]
        w = project_reference([w[i] - lr * vel[i] for i in range(n)])
    return w


def sdmgrad_is_unstable(cross: list[list[mp.mpf]], w: list[mp.mpf], lamda, n_iter, lr) -> bool:
    """Whether the official recursion amplifies a 1e-12 relative change of ``A`` past 1e-7.

    Its step (10 on ``A / s^2``) is large: where the projected iteration sits on an unstable
    fixed point (measured: ``A`` with a zero row and a negative diagonal entry, whose two
    non-zero rows give exactly equal gradients at ``w = (0, 1/2, 1/2)``), float64's rounding is
    amplified ~20x per inner step and the iterates hop between simplex vertices. No float64
    implementation can follow the 60-digit trajectory there; only feasibility can be checked.
    """
    base = sdmgrad_reference(cross, w, lamda, n_iter, lr)
    n = len(w)
    for sign in (1, -1):
        nudged = [
            [cross[i][j] * (1 + sign * (-1) ** (i + 2 * j) * mp.mpf("1e-12")) for j in range(n)]
            for i in range(n)
        ]
        other = sdmgrad_reference(nudged, w, lamda, n_iter, lr)
        if max(abs(a - b) for a, b in zip(base, other, strict=True)) > mp.mpf("1e-7"):
            return True
    return False


def assert_sdmgrad_feasible(got: np.ndarray, n: int, lamda: float) -> None:
    """``c = (w + lamda/T) / (1 + lamda)`` with ``w`` on the simplex."""
    assert np.isfinite(got).all()
    assert abs(got.sum() - 1.0) < 1e-5
    assert (got >= lamda / n / (1 + lamda) - 1e-6).all()


@settings(max_examples=15, deadline=None)
@given(cases, st.floats(0.0, 1.0))
def test_sdmgrad_steps_match_a_60_digit_recursion(case, lamda):
    regime, n, m, seed = case
    strategy = weighting.get("sdmgrad")(_tasks(n), seed=0, lamda=lamda)
    w = [mp.mpf(1) / n] * n
    for step in range(2):
        ints, exps = three_samples(regime, n, m, seed + 10 * step)
        gram = exact_gramian(ints, exps)
        got = strategy.sample_gramian_weights(
            torch.as_tensor([[float(x) for x in r] for r in gram], dtype=torch.float64),
            torch.ones(3, n),
        )
        assert got.shared[:2].abs().max() == 0
        gm = to_mp(gram)
        cross = [[gm[i, n + j] for j in range(n)] for i in range(n)]
        if sdmgrad_is_unstable(cross, w, lamda, 20, 10):
            # the trajectories part from here on: feasibility is all that can be compared
            assert_sdmgrad_feasible(got.shared[2].numpy(), n, lamda)
            return
        w = sdmgrad_reference(cross, w, lamda, 20, 10)
        final = [(x + mp.mpf(lamda) / n) / (1 + mp.mpf(lamda)) for x in w]
        assert np.allclose(got.shared[2].numpy(), [float(x) for x in final], rtol=1e-5, atol=1e-6)


def test_sdmgrad_unstable_case_is_detected_and_stays_feasible():
    """The case CI's random search found (zero_row, T = 3): the 60-digit recursion stays on the
    fixed point (0, 1/2, 1/2) while float64 leaves it after ~10 inner steps."""
    cross = [[mp.mpf(x) for x in row] for row in ((0, 0, 0), (0, -64, -2), (0, -116, 50))]
    w = [mp.mpf(1) / 3] * 3
    ref = sdmgrad_reference(cross, w, 0.3, 20, 10)
    assert [float(x) for x in ref] == pytest.approx([0.0, 0.5, 0.5], abs=1e-30)
    assert sdmgrad_is_unstable(cross, w, 0.3, 20, 10)
    got = sdmgrad_inner(
        np.array([[0, 0, 0], [0, -64, -2], [0, -116, 50.0]]), np.full(3, 1 / 3), 0.3, 20, 10
    )
    assert_sdmgrad_feasible((got + 0.1) / 1.3, 3, 0.3)
    # a stable case is not flagged
    calm = [[mp.mpf(x) for x in row] for row in ((4, 1, 0), (1, 3, 1), (0, 1, 5))]
    assert not sdmgrad_is_unstable(calm, w, 0.3, 20, 10)


@pytest.mark.parametrize("regime", REGIMES)
def test_sdmgrad_inner_solver_reaches_the_exact_qp_optimum(regime):
    """With a small inner step and many iterations, the inner solver lands on the exact
    minimiser of ``1/2 ||J (w + lamda w~)||^2`` over the simplex (the paper's problem)."""
    n, lamda = 3, 0.3
    ints, exps = regime_jacobian(regime, n, 16, 7)
    gram = exact_gramian(ints, exps)
    g = np.array([[float(x) for x in r] for r in gram])
    w = sdmgrad_inner(g, np.full(n, 1 / n), lamda, 20_000, 0.05)
    # exact optimum by KKT enumeration over faces (rationals): min (w + c)^T G (w + c)
    c = Fraction(3, 10) / n
    best, best_val = None, None
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            s = list(support)
            kkt = [[gram[i][j] for j in s] + [Fraction(1)] for i in s]
            kkt.append([Fraction(1)] * size + [Fraction(0)])
            rhs = [-sum(gram[i][j] * c for j in range(n)) for i in s] + [Fraction(1)]
            sol = solve_exact(kkt, rhs)
            if sol is None or min(sol[:size]) < 0:
                continue
            x = [Fraction(0)] * n
            for i, v in zip(s, sol[:size], strict=True):
                x[i] = v
            y = [xi + c for xi in x]
            val = sum(y[i] * gram[i][j] * y[j] for i in range(n) for j in range(n))
            if best_val is None or val < best_val:
                best, best_val = x, val
    assert best is not None
    # compare the objective (the minimiser need not be unique on degenerate inputs)
    y = w + lamda / n
    scale = float(max(abs(x) for row in gram for x in row))
    assert float(y @ g @ y) - float(best_val) <= 1e-6 * scale


def test_sdmgrad_matches_torchjd():
    from torchjd.aggregation import SDMGradWeighting

    rng = np.random.default_rng(4)
    ours = weighting.create("sdmgrad", TASKS, seed=0)
    peer = SDMGradWeighting(lr=10.0, momentum=0.5, n_iter=20, lambda_=0.3)
    for _ in range(3):
        jacs = rng.normal(size=(9, 7)) + rng.normal(size=7)
        gram = jacs @ jacs.T
        got = ours.sample_gramian_weights(torch.as_tensor(gram), torch.ones(3, 3)).weights
        want = peer(torch.as_tensor(gram[0:3, 3:6]))
        assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-7)


# --- MoCo and ExcessMTL: stateful recursions ----------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(cases, st.sampled_from(["loss", "none"]))
def test_moco_three_steps_match_a_60_digit_recursion(case, normalise):
    regime, n, m, seed = case
    m = min(m, 64)  # the reference tracks every coordinate in mpmath
    beta, gamma, rho = 0.5, 0.1, 0.05
    strategy = weighting.get("moco")(_tasks(n), seed=0, normalise=normalise, rho=rho)
    y = [[mp.mpf(0)] * m for _ in range(n)]
    lam = [mp.mpf(1) / n] * n
    for k in range(1, 4):
        ints, exps = regime_jacobian(regime, n, m, seed + k)
        jac = as_float(ints, exps)
        losses = np.linspace(0.5, 2.0, n)
        rows = tuple((torch.as_tensor(r, dtype=torch.float32).reshape(2, -1),) for r in jac)
        direction, weights = strategy.combine_parameter_gradients(
            rows, torch.as_tensor(losses, dtype=torch.float32)
        )
        bk, gk = beta / mp.mpf(k) ** mp.mpf("0.5"), gamma / mp.mpf(k) ** mp.mpf("0.5")
        for t in range(n):
            h = [mp.mpf(float(x)) for x in jac[t]]
            nrm = mp.sqrt(sum(x * x for x in h))
            scale = mp.mpf(losses[t]) / (nrm + mp.mpf("1e-8")) if normalise == "loss" else 1
            y[t] = [yi - bk * (yi - scale * hi) for yi, hi in zip(y[t], h, strict=True)]
        yy = [
            [sum(a * b for a, b in zip(y[i], y[j], strict=True)) for j in range(n)]
            for i in range(n)
        ]
        grad = [sum(yy[i][j] * lam[j] for j in range(n)) + rho * lam[i] for i in range(n)]
        lam = project_reference([lam[i] - gk * grad[i] for i in range(n)])
        d = [sum(lam[t] * y[t][c] for t in range(n)) for c in range(m)]
        assert np.allclose(weights.numpy(), [float(x) for x in lam], rtol=1e-4, atol=1e-6)
        dnorm = float(mp.sqrt(sum(x * x for x in d)))
        ynorm = max(float(mp.sqrt(sum(x * x for x in y[t]))) for t in range(n))
        got = direction[0].reshape(-1).double().numpy()
        assert np.abs(got - np.array([float(x) for x in d])).max() <= 1e-4 * dnorm + 1e-6 * ynorm


@settings(max_examples=15, deadline=None)
@given(cases, st.floats(1e-3, 1.0))
def test_excess_mtl_steps_match_a_60_digit_recursion(case, eta):
    regime, n, m, seed = case
    m = min(m, 64)
    strategy = weighting.get("excess_mtl")(_tasks(n), seed=0, robust_step_size=eta)
    sq = [[mp.mpf(0)] * m for _ in range(n)]
    w = [mp.mpf(1) / n] * n
    r0 = None
    for k in range(3):
        ints, exps = regime_jacobian(regime, n, m, seed + k)
        jac = as_float(ints, exps)
        rows = tuple((torch.as_tensor(r, dtype=torch.float32),) for r in jac)
        direction, weights = strategy.combine_parameter_gradients(rows, torch.ones(n))
        risk = []
        for t in range(n):
            h = [mp.mpf(float(x)) for x in jac[t]]
            sq[t] = [s + x * x for s, x in zip(sq[t], h, strict=True)]
            risk.append(
                sum(x * x / mp.sqrt(s + mp.mpf("1e-7")) for x, s in zip(h, sq[t], strict=True))
            )
        if r0 is None:
            r0 = risk
        else:
            w = [w[t] * mp.exp(eta * (risk[t] / r0[t] if r0[t] > 0 else 0)) for t in range(n)]
            total = sum(w)
            w = [x / total for x in w]
        assert np.allclose(weights.numpy(), [float(x) for x in w], rtol=1e-5, atol=1e-7)
        want = sum(float(w[t]) * jac[t] for t in range(n))
        got = direction[0].double().numpy()
        assert np.abs(got - want).max() <= 1e-5 * np.abs(jac).max()


def test_excess_mtl_weight_pushed_to_exp_minus_15600_comes_back():
    """The case the exactness table found (norms 5e-3..3e5, T = 6): after step 1 the weights
    are one-hot to 1e-6000; at step 2 another task's ratio is larger and the exact recursion
    moves all weight to it. Stored as weights (not log-weights) it had underflowed to 0."""
    test_excess_mtl_steps_match_a_60_digit_recursion.hypothesis.inner_test(
        ("norms_mixed", 6, 64, 4078), 0.1
    )


def test_excess_mtl_matches_torchjd():
    from torchjd.aggregation import ExcessMTLWeighting

    rng = np.random.default_rng(5)
    ours = weighting.get("excess_mtl")(TASKS, seed=0, robust_step_size=0.5)
    peer = ExcessMTLWeighting(robust_step_size=0.5)
    # torchjd also takes an exponentiated step with the *raw* first-step risks (measured: weights
    # 3.5e-5 / 0.99996 / 4e-6 after one call on rows of norms 1, 3, 0.3); LibMTL and we only
    # record them (the paper's scale processing divides every risk by its baseline). Rows that
    # are permutations of one vector have equal first-step risks, so that step is uniform there
    # and the two agree from then on.
    base = rng.normal(size=9)
    first = np.stack([np.roll(base, k) for k in range(3)])
    for step in range(4):
        jac = first if step == 0 else rng.normal(size=(3, 9)) * np.array([[1.0], [3.0], [0.3]])
        rows = tuple((torch.as_tensor(r, dtype=torch.float32),) for r in jac)
        _, got = ours.combine_parameter_gradients(rows, torch.ones(3))
        want = peer(torch.as_tensor(jac, dtype=torch.float32))
        assert torch.allclose(got, want.float(), rtol=1e-4, atol=1e-6)
