"""Screenshots of every dashboard page, for the docs: `python scripts/dashboard_screenshots.py [--db URL] [--out DIR]`.

Without --db it first fills a new store with real tiny runs (tests/support/dashboard_store.py, plus a generation and
an ASR-WER run so that no page is empty; a few minutes on a CPU). It serves `evalsuite dashboard` on loopback, opens
each page of the sidebar in Debian's Chromium (Playwright) and writes DIR/NN-page-name.png (default
docs/img/dashboard/)."""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the checkout first (tests/evalsuite must not shadow the package), then the shared test helpers: support.*
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "tests"))

from support.browser import chromium_page, open_dashboard_page, served_dashboard  # noqa: E402


def demo_store(root: Path) -> str:
    from support.dashboard_store import fill_store

    from evalsuite.runner import run_task
    from evalsuite.store import Store

    filled = fill_store(root)
    store = Store(filled["url"])
    for model in ("tiny", "tiny-baseline"):
        run_task("degeneration", model, store=store, limit=2, lengths=[1024], progress=False)
    run_task("asr_wer", "tiny", store=store, limit=2, progress=False)
    return filled["url"]


def screenshots(url: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with served_dashboard(url) as base, chromium_page() as page:
        page.goto(base)
        options = page.locator("[data-testid='stSidebar'] [data-testid='stRadioOption']")
        options.first.wait_for(timeout=120_000)
        names = options.all_inner_texts()
        for i, name in enumerate(n.strip() for n in names):
            open_dashboard_page(page, base, name)
            path = out / f"{i + 1:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.png"
            page.screenshot(path=str(path), full_page=True)
            written.append(path)
            print(f"wrote {path}", flush=True)
    return written


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", help="results store URL (default: a new store of real tiny runs)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "dashboard")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        screenshots(args.db or demo_store(Path(tmp)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
