"""Every example output in README.md and docs/ comes from running its command: this script runs them and writes
their output into the page, or with --check says which pages differ from what the commands print today.

A generated block in a page:

    <!-- output: evalsuite run --task degeneration --model tiny --lengths 1k --limit 1 --format markdown -->
    (the command's stdout, replaced on every run)
    <!-- /output -->

A block whose numbers may differ by machine names the largest difference it accepts, and the page says why:

    <!-- output (numbers ±0.03): evalsuite run --task asr_wer --limit 4 --format markdown -->

--check then passes while the text is the same and each number is within that distance of the page's (the page keeps
its numbers); any other difference is stale as usual. Each command runs with bash from the repository root, with a fresh results store of its own ($EVALSUITE_DB), the
venv's programs on PATH and a 100-column terminal. Usage:

    .venv/bin/python scripts/docs_outputs.py            # rewrite the blocks
    .venv/bin/python scripts/docs_outputs.py --check    # exit 1 and show a diff where a page is out of date
"""
from __future__ import annotations

import argparse
import difflib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"(<!-- output(?: \(numbers ±(?P<tolerance>[0-9.]+)\))?: (?P<command>.+?) -->\n)(?P<body>.*?)"
                   r"(<!-- /output -->)", re.S)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def within(old: str, new: str, tolerance: float) -> bool:
    """Same text around the numbers, and each number of `new` within `tolerance` of the one at its place in `old`."""
    if NUMBER.split(old) != NUMBER.split(new):
        return False
    pairs = zip(NUMBER.findall(old), NUMBER.findall(new), strict=True)
    return all(abs(float(a) - float(b)) <= tolerance for a, b in pairs)


def run(command: str) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "EVALSUITE_DB": str(Path(scratch) / "results.db"), "COLUMNS": "100",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "PYTHONPATH": str(ROOT), "TERM": "dumb"}
        proc = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"`{command}` failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.rstrip("\n") + "\n"


def regenerate(text: str, bar) -> str:
    def fill(m: re.Match) -> str:
        bar.set_postfix_str(m["command"][:60])
        body = run(m["command"])
        if m["tolerance"] and within(m["body"], body, float(m["tolerance"])):
            body = m["body"]
        bar.update(1)
        return m.group(1) + body + m.group(5)
    return BLOCK.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = parser.parse_args(argv)
    texts = {page: page.read_text(encoding="utf-8") for page in PAGES}
    total = sum(len(BLOCK.findall(t)) for t in texts.values())
    stale = []
    with tqdm(total=total, desc="docs outputs", unit="command") as bar:
        for page, text in texts.items():
            new = regenerate(text, bar)
            if new == text:
                continue
            if args.check:
                stale.append("".join(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                          str(page.relative_to(ROOT)), "what the commands print")))
            else:
                page.write_text(new, encoding="utf-8")
                print(f"updated {page.relative_to(ROOT)}")
    if stale:
        print("out of date (run: .venv/bin/python scripts/docs_outputs.py):\n" + "\n".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
