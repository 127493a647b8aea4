"""``--lrs auto``: a coarse learning-rate grid that widens until every choice is interior.

Start from :data:`START` (steps of ~3x). After each round the study chooses every strategy's
lr on validation (:data:`report.verdict_stats.LR_RULE`); a choice at the lowest (highest) lr
of the grid adds ``lowest / FACTOR`` (``highest * FACTOR``), and only the new lrs are trained
(the grid is resume-aware). It stops when every choice is interior, or at the cap: ``MAX_ROUNDS``
widenings or the bounds ``[LOW, HIGH]``. The report marks any lr still at an edge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from mtlbench.config import AUTO_LRS
from mtlbench.report.verdict_stats import at_edge

if TYPE_CHECKING:
    import pandas as pd

START: tuple[float, ...] = AUTO_LRS
FACTOR = 3.0
MAX_ROUNDS = 3
LOW, HIGH = 1e-6, 1.0


def widen(
    grid: Sequence[float],
    chosen: Mapping[str, float],
    *,
    factor: float = FACTOR,
    low: float = LOW,
    high: float = HIGH,
) -> tuple[float, ...] | None:
    """The next, wider grid, or None when no chosen lr is at an edge that may still move.

    ``chosen``: strategy -> its chosen lr (one of ``grid``)."""
    if factor <= 1:
        raise ValueError(f"factor must be > 1, got {factor!r}")
    values = sorted(set(grid))
    unknown = {s: lr for s, lr in chosen.items() if lr not in values}
    if unknown:
        raise ValueError(f"chosen lrs {unknown} are not in the grid {values}")
    new = set(values)
    chosen_values = set(chosen.values())
    if values[0] in chosen_values and values[0] / factor >= low:
        new.add(values[0] / factor)
    if values[-1] in chosen_values and len(values) > 1 and values[-1] * factor <= high:
        new.add(values[-1] * factor)
    if len(values) == 1 and values[0] in chosen_values and values[0] * factor <= high:
        new.add(values[0] * factor)
    if new == set(values):
        return None
    # Three significant digits keep the lrs readable and exact in MLflow params (9e-3, not
    # 0.009000000000000001).
    return tuple(sorted({float(f"{v:.3g}") for v in new}, reverse=True))


def edges(grid: Sequence[float], chosen: Mapping[str, float]) -> dict[str, str]:
    """Strategies whose chosen lr is still at an edge of the final grid, with which edge."""
    out = {}
    for strategy, lr in chosen.items():
        edge = at_edge(grid, lr)
        if edge is not None:
            out[strategy] = edge
    return out


def chosen_lrs(tidy: pd.DataFrame, grid: Sequence[float]) -> dict[str, float]:
    """Every strategy's lr chosen on validation (``report.tables.choose_lr``), judged on the
    trials at the lrs of ``grid`` only (a resumed study may hold lrs of later rounds), each
    mapped to its value in ``grid``."""
    from mtlbench.report import tables

    def on_grid(lr: float) -> float | None:
        return next((g for g in grid if math.isclose(g, lr, rel_tol=1e-9)), None)

    mapped = tidy.assign(lr=tidy["lr"].map(on_grid))
    chosen = tables.choose_lr(mapped[mapped["lr"].notna()])
    return {str(r.strategy): float(r.lr) for r in chosen.itertuples()}
