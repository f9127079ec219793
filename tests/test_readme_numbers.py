"""The README's perplexity table is what the demo prints today: `evalsuite run --task ppl_vs_length` on both bundled
checkpoints (about 40 s each on one CPU core). On a mismatch the message gives the row to paste."""
import re
from pathlib import Path

import pytest

from evalsuite.runner import run_task
from evalsuite.store import Store

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parent.parent / "README.md"


def table_row(model_id: str, m) -> str:
    ppl = m[m["name"] == "ppl"].sort_values("bin", key=lambda b: b.str.slice(7).astype(int))
    cells = [f"{v:.1f}" for v in ppl["value"]]
    last = ppl.iloc[-1]
    cells[-1] += f" [{last['ci_low']:.0f}, {last['ci_high']:.0f}]"
    return f"| {model_id} | " + " | ".join(cells) + " |"


@pytest.mark.parametrize("spec", ["tiny", "tiny-baseline"])
def test_readme_ppl_table_matches_the_demo(spec, tmp_path):
    store = Store(tmp_path / "s.db")
    result = run_task("ppl_vs_length", spec, store=store, progress=False)
    run = store.run(result.run_id)
    row = table_row(run["model_id"], store.metrics(run_id=result.run_id))
    readme_row = next((line for line in README.read_text().splitlines()
                       if re.match(rf"\| {re.escape(run['model_id'])} \| \d", line)), None)
    assert readme_row == row, f"README.md's row for {spec} should read:\n{row}"
