"""The toy's losses and Pareto set, checked against references computed here from the papers'
definition (mpmath at 30 digits, and a brute-force scan of the plane in numpy)."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
import torch

from mtlbench.toy.pareto import distance, front, pareto_set, x2_star
from mtlbench.toy.problem import Start, get_setting, objectives, strategy_losses


@pytest.fixture(autouse=True)
def _thirty_digits():
    """30 digits for this module's tests only: a module-level ``mp.mp.dps = 30`` leaked into
    every test collected after it (the 60-digit exactness references then failed)."""
    with mp.workdps(30):
        yield


def paper_losses(x1: mp.mpf, x2: mp.mpf) -> tuple[mp.mpf, mp.mpf]:
    """f1, f2 exactly as the CAGrad paper's code writes them (clamps as max)."""
    lower = mp.mpf("0.000005")
    f1 = mp.log(max(abs(mp.mpf("0.5") * (-x1 - 7) - mp.tanh(-x2)), lower)) + 6
    f2 = mp.log(max(abs(mp.mpf("0.5") * (-x1 + 3) + mp.tanh(-x2) + 2), lower)) + 6
    c1 = max(mp.tanh(x2 * mp.mpf("0.5")), 0)
    f1_sq = ((-x1 + 7) ** 2 + mp.mpf("0.1") * (-x2 - 8) ** 2) / 10 - 20
    f2_sq = ((-x1 - 7) ** 2 + mp.mpf("0.1") * (-x2 - 8) ** 2) / 10 - 20
    c2 = max(mp.tanh(-x2 * mp.mpf("0.5")), 0)
    return f1 * c1 + f1_sq * c2, f2 * c1 + f2_sq * c2


POINTS = [(-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0), (0.0, 0.0), (-7.5, -0.5), (9.0, -1.0),
          (-5.0, 3.0), (4.9, 2.0), (0.3, -8.35), (-11.0, -11.0)]  # fmt: skip


@pytest.mark.parametrize(("x1", "x2"), POINTS)
@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_losses_match_the_papers_definition(x1: float, x2: float, scale: float) -> None:
    got = objectives(torch.tensor([x1, x2], dtype=torch.float64), scale).tolist()
    f1, f2 = paper_losses(mp.mpf(x1), mp.mpf(x2))
    assert got[0] == pytest.approx(float(scale * f1), rel=1e-12, abs=1e-12)
    assert got[1] == pytest.approx(float(f2), rel=1e-12, abs=1e-12)


def test_losses_broadcast_over_a_batch_and_strategies_see_positive_shifted_losses() -> None:
    pts = torch.tensor(POINTS, dtype=torch.float64)
    batch = objectives(pts, 0.1)
    assert batch.shape == (len(POINTS), 2)
    for row, (x1, x2) in zip(batch.tolist(), POINTS, strict=True):
        assert row == pytest.approx(objectives(torch.tensor([x1, x2]).double(), 0.1).tolist())
    shifted = strategy_losses(pts, 0.1)
    assert torch.allclose(shifted - batch, torch.tensor([2.1, 21.0], dtype=torch.float64))
    # The lowest loss on a fine grid of the plane is just above -20 (the bowls' floor).
    grid = torch.cartesian_prod(torch.linspace(-12, 12, 401), torch.linspace(-12, 12, 401))
    assert float(strategy_losses(grid.double(), 1.0).min()) > 0.9


def test_settings_are_the_papers() -> None:
    assert get_setting("cagrad").starts == (Start(-8.5, 7.5), Start(-8.5, -5.0), Start(9.0, 9.0))
    assert get_setting("cagrad").scale == 1.0
    nash = get_setting("nash-mtl")
    assert nash.scale == 0.1
    assert [(s.x1, s.x2) for s in nash.starts] == [(-8.5, 7.5), (0, 0), (9, 9), (-7.5, -0.5),
                                                   (9, -1)]  # fmt: skip
    assert Start(-8.5, 7.5).label == "-8.5_7.5"
    with pytest.raises(ValueError, match="valid settings: cagrad, nash-mtl"):
        get_setting("famo")


def _paper_gradient(x1: float, x2: float) -> list[list[mp.mpf]]:
    """[[df1/dx1, df1/dx2], [df2/dx1, df2/dx2]] by mpmath numerical differentiation."""
    rows = []
    for i in range(2):
        rows.append(
            [
                mp.diff(lambda a, i=i: paper_losses(a, mp.mpf(x2))[i], mp.mpf(x1)),
                mp.diff(lambda b, i=i: paper_losses(mp.mpf(x1), b)[i], mp.mpf(x2)),
            ]
        )
    return rows


@pytest.mark.parametrize("index", [0, 500, 1000, 1700, 2000, 2600, 3500, 4000])
def test_points_of_the_pareto_set_are_pareto_stationary(index: int) -> None:
    """Two objectives on the plane: stationary means the gradients are anti-parallel (a convex
    combination of them vanishes), or one of them is zero (an end of the set)."""
    x1, x2 = pareto_set()[index]
    (a1, a2), (b1, b2) = _paper_gradient(float(x1), float(x2))
    scale = max(abs(a1), abs(a2), abs(b1), abs(b2))
    assert abs(a1 * b2 - a2 * b1) / scale**2 < 1e-9  # parallel
    norm_a, norm_b = mp.sqrt(a1**2 + a2**2), mp.sqrt(b1**2 + b2**2)
    if min(norm_a, norm_b) > 1e-9 * scale:
        assert (a1 * b1 + a2 * b2) / (norm_a * norm_b) < -1 + 1e-9  # opposite


def test_the_ends_of_the_set_are_the_two_minimisers() -> None:
    """mu = 0 is f2's minimiser, mu = 1 is f1's: each one's own gradient vanishes there."""
    curve = pareto_set()
    for point, task in ((curve[0], 1), (curve[-1], 0)):
        grad = _paper_gradient(float(point[0]), float(point[1]))[task]
        assert max(abs(g) for g in grad) < 1e-10
    end_x2 = mp.findroot(lambda b: mp.diff(lambda c: paper_losses(mp.mpf(-7), c)[1], b), -8.4)
    assert curve[0] == pytest.approx([-7.0, float(end_x2)], abs=1e-12)
    assert curve[-1] == pytest.approx([7.0, float(end_x2)], abs=1e-12)
    # The papers' line x2 = -8.3552 is the set's height at x1 = 0 only.
    assert float(x2_star(0.5)[0]) == pytest.approx(-8.3551, abs=1e-4)


def _numpy_losses(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lower = 5e-6
    f1 = np.log(np.maximum(np.abs(0.5 * (-x1 - 7) - np.tanh(-x2)), lower)) + 6
    f2 = np.log(np.maximum(np.abs(0.5 * (-x1 + 3) + np.tanh(-x2) + 2), lower)) + 6
    c1 = np.maximum(np.tanh(x2 * 0.5), 0)
    c2 = np.maximum(np.tanh(-x2 * 0.5), 0)
    f1_sq = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    f2_sq = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    return f1 * c1 + f1_sq * c2, f2 * c1 + f2_sq * c2


def test_no_point_of_a_fine_scan_beats_the_set_and_every_point_off_it_is_beaten() -> None:
    """Scan [-11, 11]^2 with step 0.02 (1.2M points) using the papers' formula in numpy: no scanned
    point is better than a point of the set in both losses, and every scanned point more than 0.3
    away from the set is beaten in both by a point of it. (Closer to the arc the losses are too
    flat across it for a scan to separate; the stationarity tests cover the arc's exact place.)"""
    axis = np.linspace(-11.0, 11.0, 1101)
    gx, gy = np.meshgrid(axis, axis)
    f1, f2 = _numpy_losses(gx.ravel(), gy.ravel())
    curve = pareto_set(40001)
    c1, c2 = _numpy_losses(curve[:, 0], curve[:, 1])
    # Along the set f1 falls and f2 rises with mu: the front is monotone.
    assert np.all(np.diff(c1) < 0) and np.all(np.diff(c2) > 0)
    tol = 1e-9
    # (1) For each point of the set, the scanned points with a lower f1 all have a higher f2.
    order = np.argsort(f1)
    prefix_min_f2 = np.minimum.accumulate(f2[order])
    n_lower = np.searchsorted(f1[order], c1 - tol)
    has_lower = n_lower > 0
    assert np.all(prefix_min_f2[n_lower[has_lower] - 1] >= c2[has_lower] - tol)
    # (2) A scanned point is beaten when the front, interpolated at its f1, has a lower f2. The
    # front is convex, so the chords between samples lie above it: the check is conservative.
    # The arc lies in -7 <= x1 <= 7, -8.44 <= x2 <= -8.35: these points are > 0.3 away from it.
    far = (np.abs(gy.ravel() + 8.4) > 0.35) | (np.abs(gx.ravel()) > 7.35)
    p1, p2 = f1[far], f2[far]
    assert np.all(p1 > c1.min())  # nothing scanned beats f1's minimum
    front_f2 = np.interp(p1, c1[::-1], c2[::-1])
    assert np.all(front_f2 < p2)


def _reference_distance(x1: float, x2: float) -> float:
    """min over the set of the distance to (x1, x2): x2*(mu) by mpmath root finding on the
    derivative of the weighted loss (mpmath.diff), the outer minimum by a dense scan of mu
    refined with golden-section search."""

    def x2_of(mu: mp.mpf) -> mp.mpf:
        def weighted(b: mp.mpf) -> mp.mpf:
            f1, f2 = paper_losses(14 * mu - 7, b)
            return mu * f1 + (1 - mu) * f2

        return mp.findroot(lambda b: mp.diff(weighted, b), mp.mpf("-8.4"))

    def dist(mu: mp.mpf) -> mp.mpf:
        return mp.sqrt((x1 - (14 * mu - 7)) ** 2 + (x2 - x2_of(mu)) ** 2)

    grid = [mp.mpf(i) / 60 for i in range(61)]
    values = [dist(m) for m in grid]
    k = min(range(61), key=lambda i: values[i])
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, 60)]
    golden = (mp.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
        if dist(a) < dist(b):
            hi = b
        else:
            lo = a
    return float(min(dist((lo + hi) / 2), values[k]))


@pytest.mark.parametrize(("x1", "x2"), [(-8.5, 7.5), (9.0, 9.0), (0.0, 0.0), (3.0, -10.0),
                                         (-9.0, -8.0), (12.0, -8.4344598555)])  # fmt: skip
def test_distance_matches_an_independent_minimisation(x1: float, x2: float) -> None:
    assert float(distance(np.array([x1, x2]))) == pytest.approx(
        _reference_distance(x1, x2), abs=1e-7
    )


def test_distance_is_zero_on_the_set_and_vectorised() -> None:
    curve = pareto_set(37)  # other samples than the default polyline's
    assert np.all(distance(curve) < 1e-8)  # the chord error of the default polyline: 5e-9
    end = pareto_set(2)[1]  # (7, x2*(1)): beyond the end along x1, the end is the nearest
    beyond = end + np.array([5.0, 0.0])
    assert distance(np.stack([beyond, end])) == pytest.approx([5.0, 0.0], abs=1e-12)


def test_front_is_the_losses_along_the_set() -> None:
    pts = front(0.1, 5)
    ref = [paper_losses(mp.mpf(x1), mp.mpf(x2)) for x1, x2 in pareto_set(5)]
    assert pts[:, 0] == pytest.approx([0.1 * float(f1) for f1, _ in ref], abs=1e-12)
    assert pts[:, 1] == pytest.approx([float(f2) for _, f2 in ref], abs=1e-12)


def test_bad_arguments_name_the_valid_range() -> None:
    with pytest.raises(ValueError, match=r"mu must lie in \[0, 1\]"):
        x2_star(1.5)
    with pytest.raises(ValueError, match="at least 2 samples"):
        pareto_set(1)
