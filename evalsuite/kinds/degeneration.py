"""Kind `degeneration`: does a long continuation repeat itself? Per window: token-level rep/l and seq-rep-n on the
model's tokens (Welleck et al. 2019), distinct-n on words; their slope per 1k tokens; the token where a loop starts.
"""
from __future__ import annotations

import math

from ..metrics.degeneration import detect_loop, distinct_n, rep_l, seq_rep_n
from ..task import register_kind
from .generation import GenerationKind

WINDOW_METRICS = ("rep", "seq_rep_2", "seq_rep_4", "distinct_1", "distinct_2")


@register_kind("degeneration")
class Degeneration(GenerationKind):
    extra_params = {"rep_l": 128, "loop_max_period": 256, "loop_min_span": 32}
    window_metrics = WINDOW_METRICS
    metrics = frozenset({*WINDOW_METRICS, *(f"{m}_slope" for m in WINDOW_METRICS), "loop_detected", "loop_token"})

    def score(self, prompt_text, windows):
        per_window = []
        for ids, text in windows:
            words = text.lower().split()
            per_window.append(dict(rep=rep_l(ids, self.param("rep_l")), seq_rep_2=seq_rep_n(ids, 2),
                                   seq_rep_4=seq_rep_n(ids, 4), distinct_1=distinct_n(words, 1),
                                   distinct_2=distinct_n(words, 2)))
        tokens = [t for ids, _ in windows for t in ids]
        loop = detect_loop(tokens, self.param("loop_max_period"), min_span=self.param("loop_min_span"))
        # loop_token: "loop detected at token N" (NaN when none; its mean is over the prompts that loop)
        return per_window, dict(loop_detected=float(loop is not None), loop_token=math.nan if loop is None else loop)
