"""report.html in headless chromium: the page loads, every figure decodes and is laid out,
nothing is fetched from outside the file, and a screenshot is saved."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import Chromium
from tests.report_study import built_report

pytestmark = pytest.mark.browser

# Flags Debian's chromium needs in a container without a display, GPU or network.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
IMAGES_JS = """
return Array.from(document.images).map(img => ({
    alt: img.alt, complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
    shown: img.getBoundingClientRect().width, src: img.currentSrc.slice(0, 22)}));
"""
FETCHED_JS = """
return performance.getEntriesByType('resource').map(e => e.name)
    .filter(n => !n.startsWith('data:') && !n.startsWith('file:'));
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, out = built_report(tmp_path_factory.getbasetemp() / "fake-report")
    return out / "report.html"


@pytest.fixture(scope="module")
def driver(chromium: Chromium, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium.binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # An explicit chromedriver: selenium must not try to download one (no internet in CI).
    browser = webdriver.Chrome(options=options, service=Service(executable_path=chromium.driver))
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()


def _open(driver: Any, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.as_uri())
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def test_report_loads_and_every_image_renders(driver: Any, page: Path, screenshot_dir: Path):
    _open(driver, page)
    assert driver.title == "mtlbench report: fake"
    assert "Leaderboard" in driver.find_element("tag name", "body").text
    images = driver.execute_script(IMAGES_JS)
    assert len(images) == 10, images  # five figures for each of the two groups
    for img in images:
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, img
        assert img["shown"] > 100, img  # laid out on the page, not collapsed
        assert img["src"] == "data:image/png;base64,", img
    assert driver.execute_script(FETCHED_JS) == []

    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(int(height), 8000))
    shot = screenshot_dir / "report.png"
    assert driver.save_screenshot(str(shot))
    with Image.open(shot) as img:
        assert img.width >= 1000 and img.height >= 1000
        pixels = np.asarray(img.convert("L"), dtype=float)
    assert pixels.std() > 10  # something was drawn, not a blank page


def test_the_check_sees_a_broken_image(driver: Any, page: Path, tmp_path: Path):
    """The same check on a copy whose first figure is corrupt: naturalWidth must read 0."""
    html = page.read_text(encoding="utf-8")
    start = html.index("data:image/png;base64,") + len("data:image/png;base64,")
    broken = tmp_path / "broken.html"
    broken.write_text(html[:start] + "AAAA" + html[start + 4000 :], encoding="utf-8")
    _open(driver, broken)
    widths = [img["width"] for img in driver.execute_script(IMAGES_JS)]
    assert widths[0] == 0 and all(w > 0 for w in widths[1:])
