"""The weighting tests' references run at 60 digits whatever other test modules set."""

from __future__ import annotations

from collections.abc import Iterator

import mpmath as mp
import pytest


@pytest.fixture(autouse=True)
def _sixty_digits() -> Iterator[None]:
    with mp.workdps(60):
        yield
