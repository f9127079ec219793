"""The `espeak` reference speech system: espeak-ng reads a text reply aloud (16 kHz mono 16-bit WAV, via sox).

It is the control for `asr_wer`: clear synthetic speech of a known text, so the ASR + WER pipeline should give a low
WER (about 0.1 with Whisper-base). espeak-ng and sox are Debian packages (scripts/setup.sh installs them).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ttt_omni.atomic import replacing_file

from .errors import EvalsuiteError

SAMPLE_RATE = 16000


class TTSError(EvalsuiteError, RuntimeError):
    """A text that cannot be spoken, or a missing TTS program."""


def _require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise TTSError(f"{program} not found on PATH; the espeak reference system needs espeak-ng and sox "
                       "(Debian: apt-get install espeak-ng sox, or run scripts/setup.sh as root)")
    return path


def espeak(text: str, path: str | os.PathLike, voice: str = "en-us", words_per_minute: int = 160) -> Path:
    """Speak `text` into the WAV file `path` (written atomically); returns the path."""
    if not text or not text.strip():
        raise TTSError("espeak: empty text reply; expected words to speak")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    espeak_ng, sox = _require("espeak-ng"), _require("sox")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".espeak.") as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        run = subprocess.run([espeak_ng, "-v", voice, "-s", str(words_per_minute), "--stdin", "-w", str(raw)],
                             input=text, text=True, capture_output=True)
        if run.returncode != 0:
            raise TTSError(f"espeak-ng failed for voice {voice!r}: {run.stderr.strip() or run.returncode}")
        # -D: no dither, which sox draws at random: the same text must give the same file (and the same WER).
        run = subprocess.run([sox, "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(out)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise TTSError(f"sox could not convert espeak-ng's output: {run.stderr.strip()}")
        with replacing_file(path) as target:
            shutil.copyfile(out, target)
    return path
