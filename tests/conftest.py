"""Fixtures shared by the test suite (keep this file small; add fixtures, do not reorganise)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (``derandomize``), so CI's verdict does not
# depend on the luck of the draw: a failure seen once is seen every time. To hunt for new
# counterexamples, run with ``HYPOTHESIS_PROFILE=explore`` (fresh random examples each run).
settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """A fresh, empty data cache for one test."""
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data cache shared by the whole session: the default synthetic set is built once."""
    return tmp_path_factory.mktemp("session-cache")


@pytest.fixture
def face_folder(tmp_path: Path) -> Path:
    """``tmp_path/faces/UTKFace`` with 24 small synthetic faces covering every gender and race."""
    from mtlbench.data import write_faces

    labels = [(5 + 3 * i, i % 2, i % 5) for i in range(24)]
    folder = tmp_path / "faces" / "UTKFace"
    write_faces(folder, labels, size=40, seed=1)
    return folder


def balanced_labels(n: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """Random ages, alternating genders, random races: ``n`` (age, gender, race) labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [(int(rng.integers(1, 90)), i % 2, int(rng.integers(0, 5))) for i in range(n)]


@pytest.fixture(scope="session")
def faces_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 160 synthetic UTKFace-named faces at 40 px, shared by the session."""
    from mtlbench.data import write_faces

    folder = tmp_path_factory.mktemp("faces") / "UTKFace"
    write_faces(folder, balanced_labels(160), size=40, seed=0)
    return folder


@pytest.fixture(scope="session")
def session_cache(session_cache_dir: Path) -> Path:
    return session_cache_dir


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu`` tests need CUDA: without it they are skipped, and the skip says why."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine (marker: gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
