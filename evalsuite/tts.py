"""The `espeak` reference speech system: espeak-ng reads a text reply aloud (16 kHz mono 16-bit WAV, via sox).

It is the control for `asr_wer`: clear synthetic speech of a known text, so the ASR + WER pipeline should give a low
WER (about 0.1 with Whisper-base). espeak-ng and sox are Debian packages (scripts/setup.sh installs them). The
speaking itself is the core's (ttt_omni.speech.tts, deterministic: the same text gives the same bytes).
"""
from __future__ import annotations

import os
from pathlib import Path

from ttt_omni.speech import tts

from .errors import EvalsuiteError


class TTSError(EvalsuiteError, RuntimeError):
    """A text that cannot be spoken, or a missing TTS program."""


def espeak(text: str, path: str | os.PathLike, voice: str = "en-us", words_per_minute: int = 160) -> Path:
    """Speak `text` into the WAV file `path` (written atomically); returns the path."""
    try:
        return tts.speak(text, path, f"espeak:{voice}", words_per_minute)
    except tts.TTSError as e:
        raise TTSError(f"espeak reference system: {e}") from None
