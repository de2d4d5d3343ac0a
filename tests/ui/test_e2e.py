"""End to end: Playwright drives Debian's /usr/bin/chromium against the real app and API.

Screenshots are saved under ``test-artifacts/e2e/`` (look at them: that is the page people see).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Server, _free_port, wait_for, wait_until_ok

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "src" / "movierec" / "ui" / "app.py"
SHOTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def ui_url(api: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = {
        **os.environ,
        "MOVIEREC_API_URL": api.url,
        "MOVIEREC_HOME": str(tmp_path_factory.mktemp("ui-home")),
        "MOVIEREC_RESULTS_DIR": str(ROOT / "docs" / "results"),
    }
    env.pop("TMDB_API_KEY", None)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.port", str(port), "--server.address", "127.0.0.1",
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(f"{url}/_stcore/health", proc, timeout=60, every=0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def _ids(page: object, prefix: str) -> list[int]:
    classes = page.eval_on_selector_all(  # type: ignore[attr-defined]
        f"[class*='st-key-{prefix}card-']", "els => els.map(e => e.className)"
    )
    out = []
    for c in classes:
        m = re.search(rf"st-key-{prefix}card-(\d+)", c)
        if m:
            out.append(int(m.group(1)))
    return out


def test_browser_journey(ui_url: str) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: run `make install` (it installs it with apt)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.goto(ui_url)
        page.get_by_text("Recommended for user 1").wait_for(timeout=60_000)

        # pick a user, see k cards
        box = page.get_by_label("User id")
        box.fill("5")
        box.press("Enter")
        page.get_by_text("Recommended for user 5").wait_for()
        wait_for(lambda: len(_ids(page, "rec-")) == 10)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(SHOTS / "1-recommendations.png"), full_page=True)

        # like one: it leaves the list, which stays full
        first = _ids(page, "rec-")[0]
        page.locator(f".st-key-rec-like-{first} button").first.click()
        wait_for(lambda: first not in _ids(page, "rec-") and len(_ids(page, "rec-")) == 10)
        page.get_by_text("Your recent taste").wait_for()
        page.screenshot(path=str(SHOTS / "2-after-like.png"), full_page=True)

        # more like this
        other = _ids(page, "rec-")[0]
        page.locator(f".st-key-rec-more-{other} button").first.click()
        page.get_by_text("More like").first.wait_for()
        wait_for(lambda: len(_ids(page, "sim-")) == 5)
        page.screenshot(path=str(SHOTS / "3-more-like-this.png"), full_page=True)

        # the new-user onboarding
        page.get_by_text("I'm new").click()
        page.get_by_text("Pick a few movies you like").wait_for()
        search = page.get_by_label("Search a movie")
        search.fill("Toy Story")
        search.press("Enter")
        page.locator("[class*='st-key-add-'] button").first.click()
        page.get_by_text("You like:").wait_for()
        wait_for(lambda: len(_ids(page, "cold-")) == 10)
        page.screenshot(path=str(SHOTS / "4-onboarding.png"), full_page=True)

        # the experiment and online pages (no experiment, no stream here: they say so)
        page.get_by_text("Experiments", exact=True).first.click()
        page.get_by_text("No experiment in force").wait_for()
        page.get_by_text("Online", exact=True).first.click()
        page.get_by_text("No served lists yet").wait_for()
        page.screenshot(path=str(SHOTS / "5-online.png"), full_page=True)
        browser.close()
    assert len(list(SHOTS.glob("*.png"))) >= 5
