"""Kind `entity_drift`: does a long continuation keep its people and places? spaCy NER (bundled English model) over
the prompt and each window: `retention` (share of the prompt's entities still named), `new_rate` (share of a
window's entities never seen before), `label_flips` (prompt entities re-tagged with another type: a crude
contradiction signal). Pronoun and gender consistency are not measured; see evalsuite.metrics.entities.
"""
from __future__ import annotations

from ..metrics.entities import drift, extract
from ..task import register_kind
from .generation import GenerationKind

WINDOW_METRICS = ("retention", "new_rate", "label_flips")


@register_kind("entity_drift")
class EntityDrift(GenerationKind):
    window_metrics = WINDOW_METRICS
    metrics = frozenset({*WINDOW_METRICS, *(f"{m}_slope" for m in WINDOW_METRICS), "prompt_entities"})

    def score(self, prompt_text, windows):
        texts = [text for _, text in windows]
        prompt_ents, *window_ents = extract([prompt_text, *texts])
        return drift(prompt_ents, list(zip(texts, window_ents))), dict(prompt_entities=float(len(prompt_ents)))
