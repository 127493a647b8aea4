"""Browser checks: a real headless chromium opens the generated report.

Locally these tests skip (with the reason) when chromium, chromedriver or selenium is missing;
with ``MTLBENCH_REQUIRE_BROWSER=1`` (set by ``nox -s browser``, which CI runs) they fail instead,
so CI cannot pass without having looked at the page.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: opens pages in headless chromium (nox -s browser)")


@dataclass(frozen=True)
class Chromium:
    binary: str
    driver: str


def _missing(reason: str) -> None:
    if os.environ.get("MTLBENCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (MTLBENCH_REQUIRE_BROWSER=1: install it, see .ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    binary = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if binary is None:
        _missing(f"no chromium on PATH (looked for {', '.join(BROWSERS)})")
    driver = shutil.which("chromedriver")
    if driver is None:
        _missing("no chromedriver on PATH (Debian: apt-get install chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("selenium is not installed (pip install selenium)")
    assert binary is not None and driver is not None
    return Chromium(binary, driver)


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $MTLBENCH_SCREENSHOT_DIR (kept by nox -s browser) or a temp dir."""
    env = os.environ.get("MTLBENCH_SCREENSHOT_DIR")
    folder = Path(env) if env else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
