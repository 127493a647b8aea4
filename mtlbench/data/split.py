"""Deterministic train/val/test splits and subsets, stratified.

The groups to keep in proportion are either a 1-D int array (one stratum per item, as a dataset
plug-in declares them) or, for UTKFace's ``[N, 3]`` label matrix, the (gender, race) pairs;
the two give the same split when the strata number the pairs in the same order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


@dataclass(frozen=True, eq=False)
class Split:
    train: np.ndarray  # int64 indices into the dataset, sorted
    val: np.ndarray
    test: np.ndarray
    sha256: str  # over (fractions, seed, the three index arrays): which split a run used


def _check_labels(labels: np.ndarray) -> None:
    if labels.ndim == 1:
        return
    if labels.ndim != 2 or labels.shape[1] < 3:
        raise ValueError(
            f"labels must be [N] strata or [N, 3] (age, gender, race), got shape {labels.shape}"
        )


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != 3 or any(not f > 0 for f in fractions):
        raise ValueError(f"split fractions must be three positive numbers, got {fractions}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fractions} (sum {sum(fractions)})")


def _strata(labels: np.ndarray) -> list[np.ndarray]:
    """Index arrays, one per stratum (or (gender, race) value) present, in a fixed order."""
    keys = labels if labels.ndim == 1 else labels[:, 1:3]
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return [np.flatnonzero(inverse == k) for k in range(int(inverse.max()) + 1)]


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to ``weights`` that sum to ``total`` (Hamilton's method)."""
    quotas = total * weights / weights.sum()
    counts = np.floor(quotas).astype(np.int64)
    # Stable sort so ties go to the earlier entry, deterministically.
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return counts


def _targets(n: int, fractions: np.ndarray) -> np.ndarray:
    targets = largest_remainder(n, fractions)
    if n >= len(fractions):
        # Every split gets at least one item whenever that is possible.
        for k in np.flatnonzero(targets == 0):
            targets[int(np.argmax(targets))] -= 1
            targets[k] = 1
    return targets


def _allocate(sizes: np.ndarray, targets: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """counts[s, k]: items of stratum s in split k; rows sum to sizes, columns to targets."""
    quotas = sizes[:, None] * fractions[None, :]
    counts = np.floor(quotas).astype(np.int64)
    # Hand out each stratum's leftover items where the fractional part is largest, as long as
    # the split still lacks items overall; whatever cannot be placed that way goes to the
    # split furthest below its target.
    remainder = quotas - counts
    for flat in np.argsort(-remainder, axis=None, kind="stable"):
        s, k = np.unravel_index(flat, remainder.shape)
        if counts[s].sum() < sizes[s] and counts[:, k].sum() < targets[k]:
            counts[s, k] += 1
    for s in range(len(sizes)):
        while counts[s].sum() < sizes[s]:
            deficit = targets - counts.sum(axis=0)
            counts[s, int(np.argmax(deficit))] += 1
    return counts


def _digest(fractions: tuple[float, ...], seed: int, parts: list[np.ndarray]) -> str:
    digest = hashlib.sha256(json.dumps({"fractions": list(fractions), "seed": seed}).encode())
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part.astype("<i8").tobytes())
    return digest.hexdigest()


def split_indices(
    labels: np.ndarray,
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> Split:
    """Stratified, seeded split; split sizes match round(N * fraction) up to one item."""
    _check_fractions(fractions)
    _check_labels(labels)
    n = len(labels)
    parts: list[list[np.ndarray]] = [[], [], []]
    if n:
        weights = np.asarray(fractions, dtype=float)
        strata = _strata(labels)
        sizes = np.array([len(s) for s in strata], dtype=np.int64)
        counts = _allocate(sizes, _targets(n, weights), weights)
        rng = np.random.default_rng(seed)
        for stratum, row in zip(strata, counts, strict=True):
            shuffled = rng.permutation(stratum)
            bounds = np.cumsum(row)[:-1]
            for k, chunk in enumerate(np.split(shuffled, bounds)):
                parts[k].append(chunk)
    train, val, test = (
        np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64) for p in parts
    )
    return Split(train, val, test, _digest(tuple(fractions), seed, [train, val, test]))


def subsample(labels: np.ndarray, max_samples: int, seed: int = 0) -> np.ndarray:
    """Sorted int64 indices of a seeded, stratified subset of min(max, N) items."""
    _check_labels(labels)
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}")
    n = len(labels)
    if max_samples >= n:
        return np.arange(n, dtype=np.int64)
    strata = _strata(labels)
    sizes = np.array([len(s) for s in strata], dtype=np.int64)
    counts = np.minimum(largest_remainder(max_samples, sizes.astype(float)), sizes)
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(s)[:c] for s, c in zip(strata, counts, strict=True)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)
