"""Every code example in README.md and docs/ stays true.

* ```python blocks run, each in a fresh interpreter, in a scratch directory where the bundled `checkpoints/` and
  `configs/` are at hand and every placeholder path the docs use (path/to/hybrid, path/to/ttt-omni, ...) holds a
  tiny checkpoint in the real on-disk layout. A block that states a result asserts it, so a wrong result fails.
* ```bash blocks: every `evalsuite` / `ttt-omni` command is parsed by the real argument parsers, its task names are
  registered tasks, and the repository paths it names (configs/, checkpoints/, tasks/, leaderboards/) exist.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^( *)```(\w*)[^\n]*\n(.*?)^\1```", re.M | re.S)
REPO_DIRS = ("configs/", "checkpoints/", "tasks/", "leaderboards/")


def blocks(language: str) -> list[tuple[str, str]]:
    """(id, code) of every fenced block in that language, dedented."""
    out = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if m.group(2) == language:
                indent = len(m.group(1))
                code = "\n".join(line[indent:] for line in m.group(3).splitlines())
                out.append((f"{doc.relative_to(ROOT)}:{text[:m.start()].count(chr(10)) + 1}", code))
    return out


# --------------------------------------------------------------------------- python blocks


def _omni_world(world: Path) -> None:
    """path/to/ttt-omni (a converted tiny LLaMA-Omni), path/to/vocoder and question.wav."""
    from support.speech import speak
    from ttt_omni.speech.tiny import write_llama_omni

    from ttt_omni.speech.omni_checkpoint import convert_omni_checkpoint

    src = write_llama_omni(world / "src" / "llama-omni")
    convert_omni_checkpoint(src, world / "path/to/ttt-omni", ttt_layers=[2, 3], ttt_type="linear")
    os.symlink(src / "vocoder", world / "path/to/vocoder")
    speak("what is the weather like today?", world / "question.wav")


def _hybrid_world(world: Path) -> None:
    """path/to/hybrid: the bundled tiny TTT model, as a converted checkpoint directory would hold it."""
    (world / "path/to").mkdir(parents=True, exist_ok=True)
    os.symlink(ROOT / "checkpoints" / "tiny-ttt", world / "path/to/hybrid")


PLACEHOLDERS = {"path/to/ttt-omni": _omni_world, "path/to/hybrid": _hybrid_world}


@pytest.mark.parametrize("where, code", blocks("python"), ids=[b[0] for b in blocks("python")])
def test_python_example_runs(where, code, tmp_path):
    for name in ("checkpoints", "configs"):
        os.symlink(ROOT / name, tmp_path / name)
    for placeholder, make in PLACEHOLDERS.items():
        if placeholder in code:
            make(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"{where} failed:\n{proc.stderr[-3000:]}"


# --------------------------------------------------------------------------- bash blocks


def commands(code: str) -> list[list[str]]:
    """The evalsuite / ttt-omni invocations of a shell block as argument lists (heredoc bodies skipped)."""
    out, heredoc = [], None
    for line in code.replace("\\\n", " ").splitlines():
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        m = re.search(r"<<-?\s*'?(\w+)'?", line)
        heredoc = m.group(1) if m else None
        words = shlex.split(line, comments=True)
        if "-m" in words and words[words.index("-m") + 1:][:1] in (["evalsuite.cli"], ["ttt_omni.cli"]):
            module = words[words.index("-m") + 1]
            words = ["evalsuite" if module.startswith("evalsuite") else "ttt-omni"] + words[words.index("-m") + 2:]
        if words and Path(words[0]).name in ("evalsuite", "ttt-omni"):
            out.append([Path(words[0]).name, *words[1:]])
    return out


def _check_command(words: list[str]) -> None:
    from evalsuite.cli import build_parser as evalsuite_parser
    from evalsuite.registry import Registry
    from ttt_omni.cli import build_parser as ttt_omni_parser

    tool, argv = words[0], words[1:]
    if argv[:1] == ["lm-eval"]:  # lm-eval's own parser
        return
    parser = evalsuite_parser() if tool == "evalsuite" else ttt_omni_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        raise AssertionError(f"`{shlex.join(words)}` does not parse (exit {e.code})") from None
    task = getattr(args, "task", None)
    if tool == "evalsuite" and args.command == "run" and not task.startswith("lm_eval:"):
        Registry().get(task)
    for word in argv:
        if word.startswith(REPO_DIRS) and not any(c in word for c in "*{<"):
            assert (ROOT / word).exists(), f"`{shlex.join(words)}` names {word}, which does not exist"


@pytest.mark.parametrize("where, code", blocks("bash"), ids=[b[0] for b in blocks("bash")])
def test_shell_example_commands_parse(where, code, capsys):
    for words in commands(code):
        _check_command(words)
    capsys.readouterr()
