"""Text -> 16 kHz mono 16-bit WAV with an offline TTS program: espeak-ng (always) or piper (when installed).

Voices are named `espeak:VOICE` (e.g. `espeak:en-us`) or `piper:MODEL.onnx`. Output is deterministic: the same
text, voice and rate give the same file, byte for byte (sox runs with -D: its default dither is random). piper-tts
is GPL-3.0 and optional; it is only run as a program, never imported. Files are written atomically.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ttt_omni.atomic import replacing_file

from .audio import SAMPLE_RATE


class TTSError(RuntimeError):
    """A text that cannot be spoken, an unknown voice or a missing TTS program."""


def _require(program: str, why: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise TTSError(f"{program} not found on PATH; {why}")
    return path


def parse_voice(voice: str) -> tuple[str, str]:
    """`espeak:en-us` -> ("espeak", "en-us"); `piper:/path/voice.onnx` -> ("piper", path). A bare name is espeak."""
    engine, sep, name = voice.partition(":")
    if not sep:
        engine, name = "espeak", voice
    if engine not in ("espeak", "piper") or not name:
        raise TTSError(f"voice {voice!r} not understood; expected espeak:VOICE (e.g. espeak:en-us) or "
                       "piper:MODEL.onnx")
    return engine, name


def speak(text: str, path: str | os.PathLike, voice: str = "espeak:en-us", words_per_minute: int = 160) -> Path:
    """Speaks `text` into the WAV file `path` (16 kHz mono 16-bit); returns the path."""
    if not text or not text.strip():
        raise TTSError("empty text; expected words to speak")
    engine, name = parse_voice(voice)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sox = _require("sox", "install sox (Debian: apt-get install sox, or run scripts/setup.sh as root)")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tts.") as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        if engine == "espeak":
            program = _require("espeak-ng", "install espeak-ng (Debian: apt-get install espeak-ng)")
            cmd = [program, "-v", name, "-s", str(words_per_minute), "--stdin", "-w", str(raw)]
        else:
            program = _require("piper", "piper voices need piper-tts (GPL-3.0, optional: pip install piper-tts)")
            if not Path(name).is_file():
                raise TTSError(f"piper voice model not found: {name}; expected a .onnx voice file")
            # piper's speed is a length scale (larger = slower) around its voice's natural rate of ~160 wpm
            cmd = [program, "--model", name, "--length_scale", f"{160 / words_per_minute:.4f}",
                   "--output_file", str(raw)]
        run = subprocess.run(cmd, input=text, text=True, capture_output=True)
        if run.returncode != 0 or not raw.is_file():
            raise TTSError(f"{engine} failed for voice {voice!r}: {run.stderr.strip()[-300:] or run.returncode}")
        run = subprocess.run([sox, "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(out)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise TTSError(f"sox could not convert {engine}'s output: {run.stderr.strip()}")
        with replacing_file(path) as target:
            shutil.copyfile(out, target)
    return path


__all__ = ["TTSError", "parse_voice", "speak"]
