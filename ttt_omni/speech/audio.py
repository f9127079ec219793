"""WAV in and out for the speech path: load any PCM/float WAV as 16 kHz mono float32, write 16-bit PCM atomically.

Speech models here (Whisper, HuBERT, the unit vocoder) all work at 16 kHz mono. Other sample rates are resampled
(polyphase filter), several channels are averaged to one; what cannot be speech (not a WAV file, no samples, NaN)
is refused with an error naming the file.
"""
from __future__ import annotations

import os
import struct
from math import gcd
from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

from ttt_omni.atomic import replacing_file

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """An audio input that cannot be used as speech."""


def _to_float(data: np.ndarray, path) -> np.ndarray:
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    if np.issubdtype(data.dtype, np.floating):
        return data.astype(np.float32)
    raise AudioError(f"{path}: unsupported WAV sample type {data.dtype}; expected PCM integer or float samples")


def resample(samples: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling of a mono float signal from `rate` to `target` Hz."""
    if rate == target:
        return samples.astype(np.float32, copy=False)
    g = gcd(int(rate), int(target))
    return resample_poly(samples, target // g, int(rate) // g).astype(np.float32)


def load_wav(path: str | os.PathLike, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The file's samples as float32 mono in [-1, 1] at `target_rate` Hz (resampled and downmixed as needed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        raise AudioError(f"{path} is not a WAV file (expected a RIFF/WAVE header); convert it first, e.g. "
                         f"`sox {path.name} -r 16000 -c 1 out.wav`")
    try:
        rate, data = wavfile.read(str(path))
    except (ValueError, EOFError, struct.error) as e:  # scipy raises struct.error on a truncated header
        raise AudioError(f"{path}: unreadable WAV file ({e})") from None
    samples = _to_float(np.asarray(data), path)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return validate_samples(resample(samples, rate, target_rate), str(path))


def validate_samples(samples, name: str = "audio") -> np.ndarray:
    """1-D finite float32 samples, non-empty; a clear error otherwise."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2 and 1 in samples.shape:
        samples = samples.reshape(-1)
    if samples.ndim != 1:
        raise AudioError(f"{name}: expected mono samples (one dimension), got shape {samples.shape}")
    if samples.size == 0:
        raise AudioError(f"{name} holds no samples; expected speech audio")
    if not np.isfinite(samples).all():
        raise AudioError(f"{name} holds NaN or infinite samples")
    return samples


def save_wav(path: str | os.PathLike, samples, rate: int = SAMPLE_RATE) -> Path:
    """Writes float samples in [-1, 1] as 16-bit PCM mono, atomically (temp file + rename)."""
    path = Path(path)
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    with replacing_file(path) as tmp:
        wavfile.write(tmp, rate, pcm)
    return path


__all__ = ["SAMPLE_RATE", "AudioError", "load_wav", "save_wav", "resample", "validate_samples"]
