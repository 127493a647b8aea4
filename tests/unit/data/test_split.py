"""Stratified, seeded splits and subsets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlbench.data import split_indices, subsample


def make_labels(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 100, n)
    genders = rng.integers(0, 2, n)
    races = rng.choice(5, n, p=[0.42, 0.19, 0.15, 0.17, 0.07])
    return np.stack([ages, genders, races], axis=1).astype(np.int64)


LABELS = make_labels(5000)


def test_same_seed_same_split_and_hash() -> None:
    a, b = split_indices(LABELS, seed=3), split_indices(LABELS, seed=3)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    assert a.sha256 == b.sha256


def test_different_seed_different_split_and_hash() -> None:
    a, b = split_indices(LABELS, seed=0), split_indices(LABELS, seed=1)
    assert not np.array_equal(a.train, b.train)
    assert a.sha256 != b.sha256


def test_hash_depends_on_fractions() -> None:
    a = split_indices(LABELS, (0.7, 0.15, 0.15))
    b = split_indices(LABELS, (0.6, 0.2, 0.2))
    assert a.sha256 != b.sha256


def test_disjoint_sorted_complete_int64() -> None:
    split = split_indices(LABELS)
    parts = [split.train, split.val, split.test]
    for part in parts:
        assert part.dtype == np.int64
        assert np.all(np.diff(part) > 0)
    merged = np.concatenate(parts)
    assert len(merged) == len(LABELS)
    np.testing.assert_array_equal(np.sort(merged), np.arange(len(LABELS)))


@pytest.mark.parametrize("fractions", [(0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.5, 0.25, 0.25)])
def test_sizes_match_fractions(fractions: tuple[float, float, float]) -> None:
    split = split_indices(LABELS, fractions)
    sizes = [len(split.train), len(split.val), len(split.test)]
    for size, fraction in zip(sizes, fractions, strict=True):
        assert abs(size - round(len(LABELS) * fraction)) <= 1


def test_stratified_by_gender_and_race() -> None:
    split = split_indices(LABELS, seed=7)
    overall = _shares(LABELS)
    for part in (split.train, split.val, split.test):
        # Proportional allocation per stratum: off by at most ~1 item per stratum.
        np.testing.assert_allclose(_shares(LABELS[part]), overall, atol=2.5 / len(part) + 1e-3)


def _shares(labels: np.ndarray) -> np.ndarray:
    keys = labels[:, 1] * 5 + labels[:, 2]
    return np.bincount(keys, minlength=10) / len(labels)


def test_tiny_datasets_fill_every_split() -> None:
    for n in range(3, 12):
        split = split_indices(make_labels(n, seed=n))
        assert min(len(split.train), len(split.val), len(split.test)) >= 1
        assert len(split.train) + len(split.val) + len(split.test) == n


def test_singleton_strata_land_somewhere() -> None:
    labels = np.array([[30, g, r] for g in (0, 1) for r in range(5)], dtype=np.int64)
    split = split_indices(labels)
    assert sorted(np.concatenate([split.train, split.val, split.test]).tolist()) == list(range(10))
    assert len(split.train) == 7


@pytest.mark.parametrize(
    "fractions", [(0.7, 0.2, 0.2), (0.7, 0.3, 0.0), (1.2, -0.1, -0.1), (0.5, 0.5)]
)
def test_bad_fractions_are_named(fractions: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match=r"fractions") as info:
        split_indices(LABELS, fractions)
    assert str(fractions) in str(info.value)


def test_bad_label_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        split_indices(np.zeros((10, 2), dtype=np.int64))


def test_declared_strata_give_utkface_split() -> None:
    """A plug-in's 1-D strata numbering (gender, race) as gender * 5 + race give exactly the
    split the [N, 3] labels give (same sha256: old studies resume)."""
    strata = LABELS[:, 1] * 5 + LABELS[:, 2]
    a, b = split_indices(LABELS, seed=4), split_indices(strata, seed=4)
    assert a.sha256 == b.sha256
    assert np.array_equal(subsample(LABELS, 300, seed=1), subsample(strata, 300, seed=1))
    # Strata really steer it: one stratum per item of a 2-valued key keeps 50/50 in each part.
    halves = np.arange(200) % 2
    split = split_indices(halves, (0.5, 0.25, 0.25))
    assert [int(halves[p].sum()) for p in (split.train, split.val, split.test)] == [50, 25, 25]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 300), seed=st.integers(0, 2**31), data_seed=st.integers(0, 100))
def test_split_is_a_partition(n: int, seed: int, data_seed: int) -> None:
    split = split_indices(make_labels(n, data_seed), seed=seed)
    merged = np.concatenate([split.train, split.val, split.test])
    np.testing.assert_array_equal(np.sort(merged), np.arange(n))
    if n >= 20:
        assert abs(len(split.train) - 0.7 * n) <= 1.5


def test_subsample_deterministic_sorted_sized() -> None:
    a = subsample(LABELS, 600, seed=2)
    b = subsample(LABELS, 600, seed=2)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 600 and a.dtype == np.int64
    assert np.all(np.diff(a) > 0)
    assert not np.array_equal(a, subsample(LABELS, 600, seed=3))


def test_subsample_is_stratified() -> None:
    chosen = subsample(LABELS, 1000, seed=0)
    np.testing.assert_allclose(_shares(LABELS[chosen]), _shares(LABELS), atol=0.002)


def test_subsample_larger_than_dataset_keeps_everything() -> None:
    np.testing.assert_array_equal(subsample(LABELS[:50], 500), np.arange(50))


def test_subsample_rejects_non_positive() -> None:
    with pytest.raises(ValueError, match="max_samples"):
        subsample(LABELS, 0)
