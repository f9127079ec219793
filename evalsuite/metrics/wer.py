"""Word error rate of an ASR transcript against the system's own text reply, as LLaMA-Omni and URO-Bench report it:
both sides through Whisper's EnglishTextNormalizer, then jiwer's alignment.

`utterance_errors` gives the error counts of one reply; `mean_utterance_wer` (URO-Bench) and `corpus_wer`
(total errors / total reference words) combine them; `segment_errors` splits one long reply's errors into time
segments using the transcript's word timestamps, to show intelligibility drift over a reply.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _normalizer():
    # the openai-whisper normalizer with its English spelling map, shipped by the `whisper-normalizer` package
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normalization (lower case, no punctuation, spelled-out numbers as digits, US spelling)."""
    return " ".join(_normalizer()(text).split())


@dataclass(frozen=True)
class Errors:
    substitutions: int
    deletions: int
    insertions: int
    ref_words: int

    @property
    def total(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        return self.total / self.ref_words if self.ref_words else math.nan


def utterance_errors(reference: str, hypothesis: str) -> Errors:
    """Error counts of one transcript; ValueError when the reference has no words after normalization (a reply
    with nothing to say cannot be scored). An empty transcript is all deletions (WER 1)."""
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        raise ValueError(f"WER reference {reference[:60]!r} has no words after normalization; expected a text reply")
    if not hyp:
        return Errors(0, len(ref.split()), 0, len(ref.split()))
    out = jiwer.process_words(ref, hyp)
    return Errors(out.substitutions, out.deletions, out.insertions, len(ref.split()))


def mean_utterance_wer(errors: list[Errors]) -> float:
    """Mean of per-utterance WERs (URO-Bench's number)."""
    return float(np.mean([e.wer for e in errors])) if errors else math.nan


def corpus_wer(errors: list[Errors]) -> float:
    """All errors over all reference words (long replies weigh more)."""
    words = sum(e.ref_words for e in errors)
    return sum(e.total for e in errors) / words if words else math.nan


def segment_errors(reference: str, hyp_words: list[tuple[str, float]], segment_s: float) -> list[Errors]:
    """Errors per time segment of `segment_s` seconds. `hyp_words` are the transcript's words with their start times.

    Each reference word takes the segment of the hypothesis word it is aligned to (a deleted word takes the time
    of the nearest earlier aligned word); an inserted word counts in its own segment.
    """
    import jiwer

    if segment_s <= 0:
        raise ValueError(f"segment length must be positive seconds, got {segment_s}")
    ref = normalize(reference).split()
    if not ref:
        raise ValueError(f"WER reference {reference[:60]!r} has no words after normalization; expected a text reply")
    # normalize word by word so each hypothesis word keeps its time (a word may normalize to 0 or several words)
    hyp, times = [], []
    for word, start in hyp_words:
        for w in normalize(word).split():
            hyp.append(w)
            times.append(start)
    n_seg = int(max(times, default=0.0) // segment_s) + 1
    counts = np.zeros((n_seg, 4), dtype=int)  # S, D, I, ref words
    if not hyp:
        counts[0, 1] = counts[0, 3] = len(ref)
        return [Errors(*map(int, row)) for row in counts]
    seg_of_hyp = [int(t // segment_s) for t in times]
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    current = 0
    for chunk in out.alignments[0]:
        for k in range(chunk.ref_end_idx - chunk.ref_start_idx if chunk.type != "insert" else 0):
            if chunk.type in ("equal", "substitute"):
                current = seg_of_hyp[chunk.hyp_start_idx + k]
            counts[current, 3] += 1
            if chunk.type == "substitute":
                counts[current, 0] += 1
            elif chunk.type == "delete":
                counts[current, 1] += 1
        if chunk.type == "insert":
            for j in range(chunk.hyp_start_idx, chunk.hyp_end_idx):
                counts[seg_of_hyp[j], 2] += 1
    return [Errors(*map(int, row)) for row in counts]
