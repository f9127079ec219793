"""RULER's needle-in-a-haystack family (Hsieh et al. 2024): "One of the special magic numbers for KEY is: VALUE."
hidden in a haystack, one question at the end.

  single       needles=1
  multi-key    needles=N: N-1 distractor needles with other keys (their values are the hardest wrong answers)
  multi-value  values_per_key=V: all V values of the queried key
  multi-query  queries=Q: the values of Q keys
Keys and values are words ("misty-otter"), numbers (7 digits) or UUIDs. The queried needles are the targets: the
first at the sample's depth, the others spread from there to the end; distractor needles at random depths.
"""
from __future__ import annotations

import random

from .problems import MAKERS, Insert, Problem, check_int, distinct, distractor_lists, join, spread

INSTRUCTION = ("Some special magic {kind}s are hidden within the following text. Make sure to memorize it. I will "
               "quiz you about the {kind}s afterwards.")
KINDS = {"numbers": "number", "words": "word", "uuids": "uuid"}


def make(rng: random.Random, depth: float, *, candidates: int, keys: str = "words", values: str = "numbers",
         needles: int = 1, values_per_key: int = 1, queries: int = 1) -> Problem:
    for name, form in (("keys", keys), ("values", values)):
        if form not in MAKERS:
            raise ValueError(f"niah: {name} must be one of {sorted(MAKERS)}, got {form!r}")
    for name, count in (("needles", needles), ("values_per_key", values_per_key), ("queries", queries)):
        check_int("niah", name, count, 1)
    if queries > needles:
        raise ValueError(f"niah: queries ({queries}) cannot exceed needles ({needles}): only needles' keys exist")
    taken: set[str] = set()
    key_list = distinct(MAKERS[keys], rng, needles, taken)
    value_lists = [distinct(MAKERS[values], rng, values_per_key, taken) for _ in key_list]
    kind = KINDS[values]
    asked = key_list[:queries]
    answers = [v for vs in value_lists[:queries] for v in vs]
    targets = [(k, v) for k, vs in zip(asked, value_lists) for v in vs]
    inserts = [Insert(_needle(kind, k, v), d, target=True) for (k, v), d in zip(targets, spread(depth, len(targets)))]
    inserts += [Insert(_needle(kind, k, v), rng.random()) for k, vs in zip(key_list[queries:], value_lists[queries:])
                for v in vs]
    hard = [v for vs in value_lists[queries:] for v in vs]
    wrong = distractor_lists(answers, hard, MAKERS[values], rng, candidates - 1, taken)
    return Problem(INSTRUCTION.format(kind=kind), tuple(inserts), _question(kind, asked, len(answers)),
                   tuple(answers), join(answers), tuple(join(w) for w in wrong),
                   {"keys": asked, "distractor_keys": key_list[queries:]})


def _needle(kind: str, key: str, value: str) -> str:
    return f" One of the special magic {kind}s for {key} is: {value}."


def _question(kind: str, keys: list[str], n_answers: int) -> str:
    named = keys[0] if len(keys) == 1 else ", ".join(keys[:-1]) + " and " + keys[-1]
    if n_answers == 1:
        return (f"What is the special magic {kind} for {named} mentioned in the provided text? The special magic "
                f"{kind} for {named} mentioned in the provided text is")
    return (f"What are all the special magic {kind}s for {named} mentioned in the provided text? The special magic "
            f"{kind}s for {named} mentioned in the provided text are")
