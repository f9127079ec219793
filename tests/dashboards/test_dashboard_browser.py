"""A real browser: `evalsuite dashboard` (Streamlit on loopback) on a store of real tiny runs, opened in Debian's
Chromium via Playwright. What a researcher reads on the pages is asserted as the browser shows it: distinct model
names with n and corpus, the log axis when values span orders of magnitude, leaderboard columns in numeric order,
and the gate's decision in force right after each decision."""
import os

import pytest
from support.browser import CHROMIUM, chromium_page, open_dashboard_page, served_dashboard, wait_idle

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        pytest.fail("Debian chromium missing: scripts/setup.sh installs it (run as root)", pytrace=False)
    pytest.skip("Debian chromium not installed (scripts/setup.sh installs it as root)", allow_module_level=True)


def test_dashboard_in_chromium(filled_store, tmp_path):
    from PIL import Image

    from dashboards.charts import spans_orders_of_magnitude
    from evalsuite.checkpoint_id import checkpoint_identity
    from evalsuite.store import Store

    ppl = Store(filled_store["url"]).metrics(task="ppl_vs_length", name="ppl")["value"]
    model_id, model_hash = checkpoint_identity(filled_store["final"])
    with served_dashboard(filled_store["url"]) as base, chromium_page() as page:
        open_dashboard_page(page, base, "Perplexity vs length")
        page.locator("canvas, svg.marks").first.wait_for(timeout=90_000)
        page.screenshot(path=str(tmp_path / "ppl.png"), full_page=True)
        table = page.locator("[data-testid='stTable'] table").first
        header = table.locator("thead th").all_inner_texts()
        assert header[:3] == ["model", "corpus", "n"] and header[3:] == ["128", "256", "512", "1k"]
        rows = [[c.strip() for c in tr.locator("th, td").all_inner_texts()] for tr in table.locator("tbody tr").all()]
        models = [r[0] for r in rows]
        assert len(rows) == 3 and any(m.startswith(f"{model_id} (") for m in models), rows  # stage run named apart
        assert any(m.startswith("tiny-baseline (") for m in models) and all(r[1:3] == ["eval.txt", "1"] for r in rows)
        log_box = page.get_by_role("checkbox", name="log y-axis")
        assert log_box.is_checked() == spans_orders_of_magnitude(ppl)

        open_dashboard_page(page, base, "Leaderboards")
        board = page.locator("[data-testid='stTable'] table").filter(has_text="length=")
        header = [h.strip() for h in board.first.locator("thead th").all_inner_texts()]
        lengths = [int(h.removeprefix("length=")) for h in header if h.startswith("length=")]
        assert lengths == [128, 256, 512, 1024] and "n" in header, header  # numeric order (was 1024, 128, ...)

        open_dashboard_page(page, base, "Gate")
        page.get_by_text("Decision history of this checkpoint").wait_for(timeout=60_000)
        page.locator("[data-testid='stSelectbox']").first.click()
        page.get_by_role("option", name=model_hash[:8], exact=False).first.click()
        wait_idle(page)
        rules = page.locator("[data-testid='stTable']").first.inner_text()
        assert "no finished human_pref run" not in rules  # the rated checkpoint's votes are its evidence
        for action, outcome in (("Reject (block)", "rejected"), ("Override (force promotion)", "forced")):
            page.get_by_text(action, exact=True).click()
            page.get_by_label("Your name").fill("Grace")
            page.get_by_label("Reason (required, recorded)").fill(f"{outcome} in the browser test")
            page.get_by_role("button", name="Record decision").click()
            wait_idle(page)
            in_force = page.get_by_text(f"by Grace", exact=False).first.inner_text()
            assert in_force.startswith(outcome), in_force  # the decision just made, not the one before it
        page.screenshot(path=str(tmp_path / "gate.png"), full_page=True)
    img = Image.open(tmp_path / "ppl.png").convert("L")
    lo, hi = img.getextrema()
    assert hi - lo > 100 and sum(1 for c in img.histogram() if c) > 20  # not blank: text, lines and bands are drawn


def test_the_screenshot_script_shoots_every_page(filled_store, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from PIL import Image

    script = Path(__file__).resolve().parents[2] / "scripts" / "dashboard_screenshots.py"
    run = subprocess.run([sys.executable, str(script), "--db", filled_store["url"], "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    shots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert shots[0] == "01-runs.png" and "07-gate.png" in shots and len(shots) >= 8
    for name in shots:
        lo, hi = Image.open(tmp_path / name).convert("L").getextrema()
        assert hi - lo > 100, name  # something is drawn on every page
