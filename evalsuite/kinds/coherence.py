"""Kind `coherence`: does a long continuation stay on topic? MiniLM embeddings (bundled) of each window and of the
prompt: cosine of neighbouring windows (`neighbour_cos`, from the second window on) and of each window to the
prompt (`prompt_cos`); their slopes per 1k tokens are the drift.
"""
from __future__ import annotations

import math

from ..metrics.coherence import embed, neighbour_cosines, prompt_cosines
from ..task import register_kind
from .generation import GenerationError, GenerationKind

WINDOW_METRICS = ("neighbour_cos", "prompt_cos")


@register_kind("coherence")
class Coherence(GenerationKind):
    window_metrics = WINDOW_METRICS
    metrics = frozenset({*WINDOW_METRICS, *(f"{m}_slope" for m in WINDOW_METRICS)})

    def score(self, prompt_text, windows):
        texts = [text for _, text in windows]
        try:
            e = embed([prompt_text, *texts], device=self.device)
        except ValueError as err:
            raise GenerationError(f"coherence: {err} (text 0 is the prompt)") from None
        neighbour = [math.nan, *neighbour_cosines(e[1:])]
        to_prompt = prompt_cosines(e[0], e[1:])
        return [dict(neighbour_cos=float(a), prompt_cos=float(b)) for a, b in zip(neighbour, to_prompt)], {}
