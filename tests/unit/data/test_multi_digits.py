"""multi-digits: the construction's properties, checked against scikit-learn's digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mtlbench.data.multi_digits import (
    MultiDigitsSpec,
    build_arrays,
    layout,
    load_multi_digits,
)

SMALL = MultiDigitsSpec(n_digits=2, image_size=32, n_train=300, n_val=80, n_test=80, seed=3)
SMALL4 = MultiDigitsSpec(n_digits=4, image_size=40, n_train=200, n_val=50, n_test=50, seed=3)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    raw = load_digits()
    return raw.images, raw.target


@pytest.mark.parametrize("spec", [SMALL, SMALL4])
def test_shapes_dtypes_and_the_labels_are_the_placed_digits_classes(
    spec: MultiDigitsSpec, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    data = build_arrays(spec)
    n = spec.n_train + spec.n_val + spec.n_test
    s, t = spec.image_size, spec.n_digits
    assert data.images.shape == (n, 1, s, s) and data.images.dtype == np.uint8
    assert data.labels.shape == (n, t) and data.labels.dtype == np.int64
    assert np.array_equal(data.labels, digits[1][data.sources])
    assert data.labels.min() == 0 and data.labels.max() == 9
    assert [len(data.indices(p)) for p in ("train", "val", "test")] == list(spec.sizes())
    assert len(spec.tasks) == t


def test_layouts_keep_sener_and_koltuns_proportions() -> None:
    assert layout(2, 36) == (28, [(0, 0), (8, 8)])  # exactly their 28 px digits on 36 px
    assert layout(2, 32) == (25, [(0, 0), (7, 7)])
    assert layout(4, 40) == (24, [(0, 0), (0, 16), (16, 0), (16, 16)])


@pytest.mark.parametrize("spec", [SMALL, SMALL4])
def test_each_digit_is_visible_where_no_other_digit_reaches(
    spec: MultiDigitsSpec, digits: tuple[np.ndarray, np.ndarray]
) -> None:
    """In the part of its box no other digit covers, the image is that digit alone: its 8 x 8
    source, upscaled here with PIL on its own, matches there (to rounding)."""
    from PIL import Image

    data = build_arrays(spec)
    side, positions = layout(spec.n_digits, spec.image_size)
    for i in range(0, len(data), 37):
        for t, (r, c) in enumerate(positions):
            src = digits[0][data.sources[i, t]].astype(np.float32) * (255 / 16)
            ref = np.asarray(Image.fromarray(src, mode="F").resize((side, side), Image.BILINEAR))
            own = np.zeros((spec.image_size,) * 2, dtype=bool)
            own[r : r + side, c : c + side] = True
            for u, (r2, c2) in enumerate(positions):
                if u != t:
                    own[r2 : r2 + side, c2 : c2 + side] = False
            got = data.images[i, 0][own].astype(np.float32)
            want = np.zeros((spec.image_size,) * 2, dtype=np.float32)
            want[r : r + side, c : c + side] = np.clip(ref, 0, 255)
            assert own.sum() > 0
            assert np.abs(got - want[own]).max() <= 0.5 + 1e-3


def test_no_source_digit_is_shared_between_splits() -> None:
    data = build_arrays(MultiDigitsSpec(n_train=3000, n_val=600, n_test=600, seed=0))
    pools = [set(data.sources[data.indices(p)].ravel().tolist()) for p in ("train", "val", "test")]
    assert not (pools[0] & pools[1]) and not (pools[0] & pools[2]) and not (pools[1] & pools[2])
    # With 3000 composites the train pool (70% of 1797) is nearly all used.
    assert len(pools[0]) > 0.9 * 0.7 * 1797
    # No identical pixels either: the sources are distinct images.
    raw = load_digits().images.reshape(1797, -1)
    train_px = {raw[i].tobytes() for i in pools[0]}
    assert not any(raw[i].tobytes() in train_px for i in pools[2])


def test_the_same_seed_gives_the_same_data_another_seed_other_data() -> None:
    a, b = build_arrays(SMALL), build_arrays(SMALL)
    for name in ("images", "labels", "split", "sources"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    c = build_arrays(MultiDigitsSpec(**{**SMALL.__dict__, "seed": 4}))
    assert not np.array_equal(a.sources, c.sources)


def test_classes_are_balanced_enough_and_strata_encode_the_labels() -> None:
    data = build_arrays(MultiDigitsSpec(n_train=5000, n_val=10, n_test=10, seed=1))
    counts = np.bincount(data.labels[:, 0], minlength=10)
    assert counts.min() > 380 and counts.max() < 620  # ~500 each
    assert np.array_equal(data.strata, data.labels[:, 0] * 10 + data.labels[:, 1])


def test_the_cache_builds_once_and_reloads_identical_arrays(tmp_path: Path) -> None:
    first = load_multi_digits(SMALL, tmp_path)
    entries = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(entries) == 1
    mtime = (entries[0] / "images.npy").stat().st_mtime_ns
    second = load_multi_digits(SMALL, tmp_path)
    assert (entries[0] / "images.npy").stat().st_mtime_ns == mtime
    assert np.array_equal(first.images, second.images)
    assert np.array_equal(np.asarray(second.labels), build_arrays(SMALL).labels)
    load_multi_digits(SMALL4, tmp_path)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_digits": 3}, "valid: 2, 4"),
        ({"image_size": 8}, r"must lie in \[12, 256\]"),
        ({"n_val": 0}, "n_val=0 must be >= 1"),
    ],
)
def test_bad_specs_name_the_valid_values(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MultiDigitsSpec(**kwargs)
    with pytest.raises(ValueError, match="valid: train, val, test"):
        build_arrays(SMALL).indices("dev")
