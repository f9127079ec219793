"""The README's result table: `evalsuite run --task ppl_vs_length` (the demo) on both bundled checkpoints, as a
Markdown table of perplexity per context length, the last column with its 95% CI over the eval books."""
from __future__ import annotations

import tempfile
from pathlib import Path

from evalsuite.plot import length_label
from evalsuite.runner import run_task
from evalsuite.store import Store


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "results.db")
        rows = []
        for spec in ("tiny", "tiny-baseline"):
            run = store.run(run_task("ppl_vs_length", spec, store=store, progress=False).run_id)
            ppl = store.metrics(run_id=run["id"], name="ppl")
            ppl = ppl.sort_values("bin", key=lambda b: b.str.slice(7).astype(int))
            cells = [f"{v:.1f}" for v in ppl["value"]]
            cells[-1] += f" [{ppl['ci_low'].iloc[-1]:.0f}, {ppl['ci_high'].iloc[-1]:.0f}]"
            rows.append(f"| {run['model_id']} | " + " | ".join(cells) + " |")
    lengths = [length_label(int(b[7:])) for b in ppl["bin"]]
    print("| model | " + " | ".join(lengths) + " |")
    print("|" + " --- |" * (len(lengths) + 1))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
