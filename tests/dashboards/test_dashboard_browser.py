"""A real browser: `evalsuite dashboard` (Streamlit on loopback) on a store of real tiny runs, opened in Debian's
Chromium via Playwright; the screenshot is not blank and the key texts are on the pages."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail("Debian chromium missing: scripts/setup.sh installs it (run as root)", pytrace=False)
    pytest.skip("Debian chromium not installed (scripts/setup.sh installs it as root)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dashboard(filled_store, tmp_path):
    port = _free_port()
    env = {**os.environ, "HOME": str(tmp_path)}  # streamlit writes ~/.streamlit; keep it out of the user's home
    proc = subprocess.Popen([sys.executable, "-m", "evalsuite.cli", "dashboard", "--db", filled_store["url"],
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError(f"dashboard did not start: {proc.stdout.read1().decode(errors='replace')}")
        yield base
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_dashboard_in_chromium(dashboard, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(dashboard)
            page.get_by_text("Runs", exact=True).first.wait_for(timeout=90_000)
            page.get_by_text("Perplexity vs length", exact=True).first.click()
            page.locator("canvas, svg.marks").first.wait_for(timeout=90_000)
            page.get_by_text("tiny-baseline", exact=False).first.wait_for(timeout=30_000)
            shot = tmp_path / "ppl.png"
            page.screenshot(path=str(shot), full_page=True)
            page.get_by_text("Gate", exact=True).first.click()
            page.get_by_text("Curriculum gate", exact=True).first.wait_for(timeout=60_000)
            page.get_by_text("Decision history of this checkpoint").wait_for(timeout=60_000)
            page.screenshot(path=str(tmp_path / "gate.png"), full_page=True)
        finally:
            browser.close()
    img = Image.open(shot).convert("L")
    lo, hi = img.getextrema()
    assert hi - lo > 100 and sum(1 for c in img.histogram() if c) > 20  # not blank: text, lines and bands are drawn
    if os.environ.get("DASHBOARD_SCREENSHOTS"):
        for name in ("ppl.png", "gate.png"):
            (Path(os.environ["DASHBOARD_SCREENSHOTS"]) / name).write_bytes((tmp_path / name).read_bytes())
