"""A real browser (Debian's Chromium driven by Playwright) votes through the form; the vote lands in the store."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from support.humaneval import SYSTEMS, add_rater, live_server

from evalsuite.humaneval import db
from evalsuite.humaneval.app import create_app
from evalsuite.humaneval.bundle import load_key, load_served

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail("Debian chromium missing: scripts/setup.sh installs it (run as root)", pytrace=False)
    pytest.skip("Debian chromium not installed (scripts/setup.sh installs it as root)", allow_module_level=True)


def test_rater_votes_in_a_real_browser(bundle, db_url):
    from playwright.sync_api import sync_playwright

    token = add_rater(db_url, bundle, "alice", n=2)
    served = load_served(bundle)
    with live_server(create_app(bundle, db_url)) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{base}/r/{token}")
            assert "0 of 2 pairs answered" in page.content()
            page.click("text=Continue with the next unanswered pair")
            first = re.search(r"/p/([0-9a-f]{24})$", page.url).group(1)
            assert page.locator("audio").count() == 2
            src = page.locator("#left audio").get_attribute("src")
            audio = page.request.get(base + src)
            assert audio.ok and audio.headers["content-type"] == "audio/wav"
            assert not any(s in page.content() for s in SYSTEMS)
            page.check("input[name=choice][value=right]")
            page.fill("textarea[name=comment]", "right one flows better")
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r"/p/[0-9a-f]{24}$"))
            assert first not in page.url and "1 answered" in page.content()
            page.check("input[name=choice][value=tie]")
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(rf"/r/{token}$"))
            assert "All done" in page.content()
        finally:
            browser.close()
    votes = db.bundle_votes(db.make_engine(db_url), served.bundle_id)
    assert {(v["pair_id"], v["choice"], v["comment"]) for v in votes if v["pair_id"] == first} == {
        (first, "right", "right one flows better")
    }
    assert sorted(v["choice"] for v in votes) == ["right", "tie"]
    winner = load_key(bundle)["pairs"][first]["right"]["system"]
    assert winner in SYSTEMS
