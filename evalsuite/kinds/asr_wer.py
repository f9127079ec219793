"""Kind `asr_wer`: is a system's speech intelligible? Each spoken reply is transcribed by an ASR backend
(evalsuite.asr) and scored against the system's own text reply (WER, Whisper-normalized, as LLaMA-Omni reports it).

Systems (`system`; the default `auto` is `omni` for an `omni:PATH` model and `espeak` otherwise):
  espeak  espeak-ng reads the text reply aloud, the reference that shows the metric working (WER about 0.1 with the
          embedded Whisper-base). The text reply is a passage of the corpus (`reply: passage`, clear text) or the
          model's own continuation of that passage (`reply: generate`, `reply_tokens` tokens).
  omni    the Omni model (`--model omni:PATH`) answers the passage as one user turn of a fresh conversation
          (`turn: text`, or `turn: speech`: the passage spoken by espeak-ng, as LLaMA-Omni is used), through
          `ttt_omni.speech.chat.OmniChat`: a text reply of up to `reply_tokens` tokens and its speech units, which the
          unit vocoder (`vocoder`, default PATH/vocoder) turns into the WAV that is transcribed. A reply with no units
          is silence (WER 1).

Rows: `wer_mean` (mean of per-utterance WERs, as URO-Bench), `wer_corpus` (all errors / all reference words), both
with bootstrap CIs over replies, and `wer_corpus` per time segment of `segment_s` seconds (bins "t=0-60s", ...)
to show intelligibility drift within long replies. Audio files are kept under `audio_dir` for listening and
human-eval export (the "output" samples carry their paths).
"""
from __future__ import annotations

import hashlib
import math
import re
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import EvalsuiteError, TaskSpecError
from ..metrics.stats import bootstrap_indices, percentile_ci
from ..metrics.wer import normalize, segment_errors, utterance_errors
from ..store import config_hash
from ..task import CorpusDataset, TaskSpec, Unit, check_section, params_schema, register_kind
from .generation import OUTPUT_SAMPLE, GenerationError, GenerationKind

PARAMS = {"system": "auto", "reply": "passage", "turn": "text", "vocoder": "", "asr": "faster-whisper",
          "n_prompts": 8, "reply_words": 40, "reply_tokens": 64, "prompt_tokens": 128, "segment_s": 60.0,
          "voice": "en-us", "words_per_minute": 160, "audio_dir": "results/audio", "n_boot": 1000, "do_sample": True,
          "temperature": 1.0, "top_p": 0.95}
CHOICES = {"system": ("auto", "espeak", "omni"), "reply": ("passage", "generate"), "turn": ("text", "speech")}


@register_kind("asr_wer")
class AsrWer(GenerationKind):
    metrics = frozenset({"wer_mean", "wer_corpus"})
    extra_params = PARAMS

    @classmethod
    def validate(cls, spec: TaskSpec) -> None:
        check_section(spec, "dataset", CorpusDataset)
        check_section(spec, "params", params_schema(PARAMS, CHOICES))

    def __init__(self, spec: TaskSpec, model, **kw):
        super().__init__(spec, model, **kw)
        system = self.param("system")
        self.system = ("omni" if model.omni is not None else "espeak") if system == "auto" else system
        where = f"{spec.source}: asr_wer"
        if self.system == "omni" and model.omni is None:
            raise TaskSpecError(f"{where}: system omni needs an Omni model (a model spec omni:PATH), got {model.spec!r}")
        if self.system == "omni" and self.param("reply") != "passage":
            raise TaskSpecError(f"{where}: reply: {self.param('reply')} is for system espeak; system omni speaks "
                                "its own reply")
        if self.system == "espeak" and self.param("turn") != "text":
            raise TaskSpecError(f"{where}: turn: {self.param('turn')} is for system omni (how the passage reaches "
                                "the Omni model)")
        if self.system == "omni" and model.omni.speech_generator is None:
            raise TaskSpecError(f"{where}: {model.spec} has no speech generator (speech_generator_type unset); "
                                "it cannot speak")
        if self.system == "omni":
            self.vocoder  # noqa: B018  (a missing or bad vocoder fails here, before the run is recorded)

    def param(self, key: str):
        return self.spec.params.get(key, PARAMS[key])

    def subject(self) -> tuple[str, str] | None:
        """espeak-ng reading corpus passages never uses the model: the run measures the reference system."""
        if self.system != "espeak" or self.param("reply") != "passage":
            return None
        reference = {k: self.param(k) for k in ("voice", "words_per_minute", "asr")}
        return "reference:espeak-ng", config_hash(reference)

    @cached_property
    def vocoder_path(self) -> Path:
        path = self.param("vocoder")
        return Path(path).expanduser() if path else Path(self.model.spec.partition(":")[2]).expanduser() / "vocoder"

    @cached_property
    def vocoder(self):
        from ttt_omni.speech.vocoder import UnitVocoder

        try:
            return UnitVocoder.from_pretrained(self.vocoder_path).to(self.device)
        except (OSError, ValueError) as e:
            raise EvalsuiteError(f"asr_wer: system omni needs a unit vocoder (params.vocoder, default "
                                 f"MODEL/vocoder: g_00500000 + config.json): {e}") from None

    @cached_property
    def asr(self):
        from ..asr import load_asr

        return load_asr(self.param("asr"), self.device)

    def config(self) -> dict:
        config = {**super().config(), "asr": self.param("asr"), "system": self.system}
        if self.system == "omni":
            from ..models import content_hash

            path = self.vocoder_path
            config.update(vocoder=str(path.resolve()), vocoder_hash=content_hash(path))
        return config

    def passage(self, unit: Unit) -> str:
        doc, start = unit.payload
        # bracketed asides (stage directions) are dropped: Whisper's normalizer deletes them from the reference only
        text = re.sub(r"\([^)]*\)|\[[^\]]*\]|_", " ", doc.read()[start:start + 40 * self.param("reply_words")])
        return " ".join(text.split()[: self.param("reply_words")])

    def reply(self, unit: Unit) -> tuple[str, str]:
        """(prompt, text reply) of one unit (system espeak)."""
        passage = self.passage(unit)
        if self.param("reply") == "passage":
            return "", passage
        tok = self.model.tokenizer
        prompt = tok(passage, add_special_tokens=False)["input_ids"][-self.param("prompt_tokens"):]
        return passage, tok.decode(self.generate(unit, prompt, self.param("reply_tokens"))).strip()

    def audio_path(self, unit: Unit, suffix: str = "") -> Path:
        who = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model.model_id)
        key = re.sub(r"[^A-Za-z0-9._@-]+", "_", unit.key)
        ident = hashlib.sha256(repr(sorted(self.config().items())).encode()).hexdigest()[:8]
        return Path(self.param("audio_dir")) / "asr_wer" / f"{who}-{ident}-seed{self.seed}" / f"{key}{suffix}.wav"

    def speak_espeak(self, unit: Unit) -> tuple[str, str, Path, dict]:
        """(prompt, text reply, reply WAV, extra output data) of system espeak."""
        from ..tts import espeak

        prompt, text = self.reply(unit)
        if not text:
            raise GenerationError(f"asr_wer: unit {unit.key}: empty text reply; nothing to speak or score")
        return prompt, text, espeak(text, self.audio_path(unit), self.param("voice"),
                                    self.param("words_per_minute")), {}

    def speak_omni(self, unit: Unit) -> tuple[str, str, Path, dict]:
        """(prompt, text reply, reply WAV, extra output data) of system omni: one turn of a fresh conversation."""
        import torch

        from ttt_omni.conversation import ConversationStore
        from ttt_omni.speech.audio import save_wav
        from ttt_omni.speech.chat import OmniChat

        from ..tts import espeak

        omni, passage = self.model.omni, self.passage(unit)
        if not passage:
            raise GenerationError(f"asr_wer: unit {unit.key}: no words in the corpus at this position; no prompt")
        chat = OmniChat(omni, self.model.tokenizer, ConversationStore(omni.llm), self.vocoder)
        seed = int(hashlib.sha256(f"{self.seed}:{unit.key}".encode()).hexdigest()[:8], 16)
        sampling = dict(do_sample=self.param("do_sample"), temperature=self.param("temperature"),
                        top_p=self.param("top_p"), generator=torch.Generator(omni.device).manual_seed(seed))
        extra = {"turn": self.param("turn")}
        if self.param("turn") == "speech":
            prompt_wav = espeak(passage, self.audio_path(unit, ".prompt"), self.param("voice"),
                                self.param("words_per_minute"))
            extra["prompt_audio"] = str(prompt_wav.resolve())
            reply = chat.turn("asr_wer", wav=prompt_wav, max_new_tokens=self.param("reply_tokens"), **sampling)
        else:
            reply = chat.turn("asr_wer", text=passage, max_new_tokens=self.param("reply_tokens"), **sampling)
        if not normalize(reply.text):
            raise GenerationError(f"asr_wer: unit {unit.key}: the Omni model's text reply {reply.text[:60]!r} has no "
                                  f"words ({len(reply.tokens)} tokens); nothing to score")
        wav = save_wav(self.audio_path(unit), reply.audio, self.vocoder.sample_rate)
        extra.update(tokens=len(reply.tokens), units=len(reply.units))
        return passage, reply.text, wav, extra

    def run_unit(self, unit: Unit) -> list[dict]:
        from ..asr import Transcript

        prompt, text, wav, extra = (self.speak_omni if self.system == "omni" else self.speak_espeak)(unit)
        if extra.get("units") == 0:  # no speech at all: an empty transcript (all deletions), ASR not asked
            transcript = Transcript("", [], 0.0)
        else:
            transcript = self.asr.transcribe(wav)
        e = utterance_errors(text, transcript.text)
        rows = [dict(name=OUTPUT_SAMPLE, bin="", value=transcript.duration_s, n=e.ref_words,
                     data={"prompt": prompt, "text": text, "audio": str(wav.resolve()), "prompt_id": unit.key,
                           **extra}),
                dict(name="utterance", bin="", value=e.wer, n=e.ref_words,
                     data={"transcript": transcript.text, "errors": e.total, "asr": self.asr.name})]
        seg = self.param("segment_s")
        for k, s in enumerate(segment_errors(text, transcript.words, seg)):
            if s.ref_words or s.insertions:
                rows.append(dict(name="segment", bin=f"t={k * seg}-{(k + 1) * seg}s", value=float(s.total),
                                 n=s.ref_words))
        return rows

    def aggregate(self, samples: pd.DataFrame) -> list[dict]:
        n_boot, seed = self.param("n_boot"), self.seed
        utt = samples[samples["name"] == "utterance"]
        wers, words = utt["value"].to_numpy(float), utt["n"].to_numpy(float)
        errors = wers * words
        idx = bootstrap_indices(len(wers), n_boot, seed)
        rows = [_row("wer_mean", "", wers.mean(), wers[idx].mean(axis=1), len(wers)),
                _row("wer_corpus", "", errors.sum() / words.sum(), errors[idx].sum(1) / words[idx].sum(1), len(wers))]
        seg = samples[samples["name"] == "segment"]
        for bin_, part in sorted(seg.groupby("bin"), key=lambda kv: int(kv[0][2:].split("-")[0])):
            e, w = part["value"].to_numpy(float), part["n"].to_numpy(float)
            i = bootstrap_indices(len(e), n_boot, seed)
            with np.errstate(invalid="ignore", divide="ignore"):
                rows.append(_row("wer_corpus", bin_, e.sum() / w.sum() if w.sum() else math.nan,
                                 e[i].sum(1) / w[i].sum(1), len(e)))
        wanted = set(self.spec.metrics or self.metrics)
        return [r for r in rows if r["name"] in wanted]


def _row(name: str, bin_: str, value: float, replicates: np.ndarray, n: int) -> dict:
    low, high = percentile_ci(np.where(np.isfinite(replicates), replicates, np.nan)[:, None])
    return dict(name=name, bin=bin_, value=float(value), ci_low=float(low[0]), ci_high=float(high[0]), n=n)
