"""Debian's Chromium driven by Playwright, and the dashboard served on loopback for it (browser tests and
scripts/dashboard_screenshots.py)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_dashboard(url: str):
    """`evalsuite dashboard --db URL` on a free loopback port; yields its base address once it answers."""
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HOME": home}  # streamlit writes ~/.streamlit; keep it out of the user's home
        proc = subprocess.Popen([sys.executable, "-m", "evalsuite.cli", "dashboard", "--db", url, "--port", str(port)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(240):
                try:
                    if urllib.request.urlopen(f"{base}/_stcore/health", timeout=1).read() == b"ok":
                        break
                except OSError:
                    time.sleep(0.5)
            else:
                raise RuntimeError(f"dashboard did not start: {proc.stdout.read1().decode(errors='replace')}")
            yield base
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def open_dashboard_page(page, base: str, name: str) -> None:
    """Go to one dashboard page by its sidebar label and wait until its script has finished running."""
    options = page.locator("[data-testid='stSidebar'] [data-testid='stRadioOption']")
    if not page.url.startswith(base):
        page.goto(base)
        options.first.wait_for(timeout=120_000)
    options.filter(has_text=name).first.click()
    wait_idle(page)


def wait_idle(page, timeout_s: float = 120) -> None:
    """Streamlit shows a status widget while a script runs: wait until it is gone (and a moment for charts)."""
    page.wait_for_timeout(500)
    page.wait_for_function("() => !document.querySelector(\"[data-testid='stStatusWidget']\")",
                           timeout=timeout_s * 1000)
    page.wait_for_timeout(1500)
