import pytest

from mtlbench.runs.lr_auto import START, edges, widen


def test_interior_choices_stop_the_search() -> None:
    assert widen(START, {"sum": 3e-4, "famo": 3e-4}) is None
    assert edges(START, {"sum": 3e-4}) == {}


def test_edges_widen_by_three() -> None:
    grid = widen(START, {"sum": 1e-4, "famo": 3e-4})
    # New lrs are rounded to three significant digits: 1e-4 / 3 -> 3.33e-5.
    assert grid == (1e-3, 3e-4, 1e-4, 3.33e-5)
    grid = widen(START, {"sum": 1e-4, "famo": 1e-3})
    assert grid == (3e-3, 1e-3, 3e-4, 1e-4, 3.33e-5)


def test_cap_at_the_bounds_and_edges_reported() -> None:
    assert widen((1e-5, 3e-5), {"sum": 1e-5}, low=1e-5) is None
    assert edges((1e-5, 3e-5), {"sum": 1e-5, "famo": 3e-5}) == {"sum": "low", "famo": "high"}


def test_repeated_widening_terminates() -> None:
    grid: tuple[float, ...] = START
    rounds = 0
    while (nxt := widen(grid, {"sum": min(grid)})) is not None:
        grid, rounds = nxt, rounds + 1
    assert min(grid) >= 1e-6 and rounds == 4  # 1e-4 / 3**4 = 1.2e-6; 3**5 would pass 1e-6


def test_unknown_lr_refused() -> None:
    with pytest.raises(ValueError, match="not in the grid"):
        widen(START, {"sum": 5e-4})
