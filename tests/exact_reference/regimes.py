"""Task-gradient matrices (float32, T x n) for the regimes of issue 10."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGIMES = (
    "random",
    "conflicting",
    "aligned",
    "norms_mixed",  # row norms spanning 1e-4..1e4, random directions
    "norms_aligned",  # the same norms on nearly parallel rows
    "zero_row",
    "rank_deficient",  # exact in float32: integer rows of rank < T
    "duplicated",
    "opposite_unequal",  # g_1 = -2 g_0 exactly
)


@dataclass(frozen=True)
class Case:
    regime: str
    rows: np.ndarray  # float32 [T, n]
    losses: np.ndarray  # float64 [T], positive
    seed: int

    @property
    def n_tasks(self) -> int:
        return int(self.rows.shape[0])

    def __repr__(self) -> str:  # hypothesis prints this on failure
        return f"Case({self.regime!r}, T={self.n_tasks}, n={self.rows.shape[1]}, seed={self.seed})"


def _spread(rng: np.random.Generator, n_tasks: int) -> np.ndarray:
    exps = np.linspace(-4.0, 4.0, n_tasks)
    rng.shuffle(exps)
    return 10.0**exps


def make_case(regime: str, n_tasks: int, width: int, seed: int) -> Case:
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; valid: {', '.join(REGIMES)}")
    rng = np.random.default_rng(seed)
    t, n = n_tasks, width
    if regime == "random":
        rows = rng.normal(size=(t, n))
    elif regime == "conflicting":
        raw = rng.normal(size=(t, n))
        rows = raw - 0.9 * raw.mean(axis=0) * t / max(t - 1, 1)  # pairwise cosines < 0
    elif regime == "aligned":
        rows = rng.normal(size=n) + 0.2 * rng.normal(size=(t, n))
    elif regime == "norms_mixed":
        raw = rng.normal(size=(t, n))
        rows = raw / np.linalg.norm(raw, axis=1, keepdims=True) * _spread(rng, t)[:, None]
    elif regime == "norms_aligned":
        raw = rng.normal(size=n) + 0.3 * rng.normal(size=(t, n))
        rows = raw / np.linalg.norm(raw, axis=1, keepdims=True) * _spread(rng, t)[:, None]
    elif regime == "zero_row":
        rows = rng.normal(size=(t, n))
        rows[rng.integers(t)] = 0.0
    elif regime == "rank_deficient":
        rank = max(1, min(t - 1, n, int(rng.integers(1, t))))
        mix = rng.integers(-3, 4, size=(t, rank))
        mix[:rank] += 4 * np.eye(rank, dtype=mix.dtype)  # the first `rank` rows independent
        base = rng.integers(-64, 65, size=(rank, n))
        rows = (mix @ base) / 64.0  # small integers / 2^6: exact in float32
    elif regime == "duplicated":
        rows = rng.normal(size=(t, n))
        i, j = rng.choice(t, size=2, replace=False)
        rows[j] = rows[i]
    else:  # opposite_unequal
        rows = rng.normal(size=(t, n))
        i, j = rng.choice(t, size=2, replace=False)
        rows[j] = -2.0 * rows[i]
    losses = np.exp(rng.uniform(-1.0, 1.0, size=t))
    return Case(regime, rows.astype(np.float32), losses, seed)
