"""A problem laid out in a model's tokens: instruction, haystack with the inserts, question; exactly
`length - reserve` tokens, so that the prompt and its longest answer fit in `length`.

Layout, each part tokenized on its own and the ids concatenated (never re-tokenized as one string):

    [BOS] instruction "\\n\\n" | haystack with the inserts | "\\n\\n" question

An insert meant for depth d goes before haystack token round(d * H) (H = haystack tokens), moved to the nearest
sentence start within `snap` tokens, else the nearest word start, else left there; the haystack's two ends always
count as sentence starts. `Prompt.positions` holds where each insert went, so its depth is exact and recorded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .haystack import Haystack
from .problems import Problem, RetrievalError

WORD_START = ("Ġ", "▁", "Ċ", "ĉ")  # how byte-level BPE and SentencePiece vocabularies spell a leading space/newline
_SENTENCE_END = re.compile(r"[.!?][\"')\]’”]*\s*$")


class PromptTooShortError(RetrievalError):
    """The length cannot hold the instruction, the inserts, the question and the answer."""


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    spans: list[tuple[int, int]]  # [start, end) of each insert in `ids`, in `Problem.inserts` order
    positions: list[int]  # haystack tokens before each insert
    haystack_tokens: int
    context: tuple[int, int]  # [start, end) of the haystack with its inserts in `ids`

    def depth(self, i: int) -> float:
        """Actual depth of insert i: the share of the haystack before it."""
        return self.positions[i] / self.haystack_tokens

    def distance(self, i: int) -> int:
        """Tokens between the end of insert i and the question: the haystack (and later inserts) after it."""
        return self.context[1] - self.spans[i][1]


def build(problem: Problem, tokenizer, length: int, haystack: Haystack, *, reserve: int, snap: int = 48,
          from_end: int | None = None) -> Prompt:
    """`problem` in `length - reserve` tokens of `tokenizer`, the haystack's tokens drawn from `haystack`. With
    `from_end`, every insert goes `from_end` haystack tokens before the question instead of at its depth (then
    snapped); a distance the haystack cannot hold is an error."""
    encode = lambda text: tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]  # noqa: E731
    prefix = tokenizer(problem.instruction + "\n\n", verbose=False)["input_ids"]  # the tokenizer's BOS, if any
    suffix = encode("\n\n" + problem.question)
    inserts = [encode(i.text) for i in problem.inserts]
    total = length - reserve
    h = total - len(prefix) - len(suffix) - sum(map(len, inserts))
    if h < 1:
        fixed = total - h
        raise PromptTooShortError(
            f"length {length} is too short for this sample: its instruction, question and inserts take {fixed} tokens "
            f"and {reserve} are kept for the answer, which leaves no haystack (expected a length above "
            f"{fixed + reserve})")
    if from_end is not None and not 0 <= from_end <= h:
        raise PromptTooShortError(f"length {length} holds {h} haystack tokens, too few to put the needle {from_end} "
                                  f"tokens before the question (expected a longer length)")
    hay = haystack(h)
    if len(hay) != h:
        raise ValueError(f"the haystack gave {len(hay)} tokens, expected {h}")
    pieces = tokenizer.convert_ids_to_tokens(hay)
    targets = [round(i.depth * h) if from_end is None else h - from_end for i in problem.inserts]
    positions = [_snap(t, h, pieces, tokenizer, hay, snap) for t in targets]
    ids, spans, cursor = list(prefix), [(0, 0)] * len(inserts), 0
    for i in sorted(range(len(inserts)), key=lambda i: (positions[i], i)):
        ids += hay[cursor:positions[i]]
        spans[i] = (len(ids), len(ids) + len(inserts[i]))
        ids += inserts[i]
        cursor = positions[i]
    ids += hay[cursor:]
    context = (len(prefix), len(ids))
    ids += suffix
    assert len(ids) == total, (len(ids), total)
    return Prompt(ids, spans, positions, h, context)


def _snap(target: int, h: int, pieces: list[str], tokenizer, hay: list[int], window: int) -> int:
    """The nearest sentence start to `target` within `window` tokens, else the nearest word start, else `target`.
    Nearest-point choices with ties to the left, so inserts keep the order of their depths."""
    if target in (0, h) or window == 0:
        return target
    near = range(max(0, target - window), min(h, target + window) + 1)
    words = [p for p in near if p in (0, h) or pieces[p].startswith(WORD_START) or pieces[p][:1].isspace()]
    if not words:
        return target
    ends = {p: tokenizer.decode([hay[p - 1]]) for p in words if 0 < p < h}
    sentences = [p for p in words if p in (0, h) or _SENTENCE_END.search(ends[p])]
    return min(sentences or words, key=lambda p: (abs(p - target), p))


def excerpt(prompt: Prompt, tokenizer, around: int = 24) -> str:
    """The prompt for reading: instruction, each insert with `around` haystack tokens either side, the question;
    the haystack between as "[... N tokens ...]"."""
    keep = [(0, prompt.context[0]), (prompt.context[1], len(prompt.ids))]
    keep += [(max(prompt.context[0], s - around), min(prompt.context[1], e + around)) for s, e in prompt.spans]
    merged: list[list[int]] = []
    for s, e in sorted(keep):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    out, cursor = [], 0
    for s, e in merged:
        if s > cursor:
            out.append(f" [... {s - cursor} tokens ...] ")
        out.append(tokenizer.decode(prompt.ids[s:e]))
        cursor = e
    return "".join(out)
