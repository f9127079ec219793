"""Every example output in README.md and docs/ is what its command prints today (scripts/docs_outputs.py --check
runs each command; the README's result table is the demo on both bundled checkpoints)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_generated_docs_outputs_are_up_to_date():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs_outputs.py"), "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]


def test_a_stale_block_is_found(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_outputs", ROOT / "scripts" / "docs_outputs.py")
    docs_outputs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs_outputs)

    page = tmp_path / "page.md"
    page.write_text("text\n<!-- output: echo fresh -->\nstale\n<!-- /output -->\nmore\n")
    monkeypatch.setattr(docs_outputs, "PAGES", [page])
    monkeypatch.setattr(docs_outputs, "ROOT", tmp_path)
    assert docs_outputs.main(["--check"]) == 1 and "stale" in page.read_text()
    assert docs_outputs.main([]) == 0
    assert page.read_text() == "text\n<!-- output: echo fresh -->\nfresh\n<!-- /output -->\nmore\n"
    assert docs_outputs.main(["--check"]) == 0


def test_a_block_with_a_tolerance_accepts_numbers_within_it(tmp_path, monkeypatch):
    """Machine-dependent numbers (the ASR's) are checked within the distance the page names, text exactly."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_outputs", ROOT / "scripts" / "docs_outputs.py")
    docs_outputs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs_outputs)
    monkeypatch.setattr(docs_outputs, "ROOT", tmp_path)
    page = tmp_path / "page.md"
    monkeypatch.setattr(docs_outputs, "PAGES", [page])

    def check(printed: str) -> int:
        page.write_text(f"<!-- output (numbers ±0.03): echo '{printed}' -->\n| wer | 0.1457 |\n<!-- /output -->\n")
        return docs_outputs.main(["--check"])

    assert check("| wer | 0.1651 |") == 0
    assert "0.1457" in page.read_text()
    assert check("| wer | 0.1851 |") == 1  # 0.039 away
    assert check("| WER | 0.1457 |") == 1  # the text differs
    assert check("| wer | 0.1457 | 4 |") == 1  # a number more
