"""The passkey test (Mohtashami & Jaggi 2023, "Landmark Attention"): a number hidden at a depth in repeated filler
sentences, asked for at the end."""
from __future__ import annotations

import random

from .problems import Insert, Problem, check_int, distinct, number

INSTRUCTION = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will "
               "quiz you about the important information there.")
QUESTION = "What is the pass key? The pass key is"


def make(rng: random.Random, depth: float, *, candidates: int, digits: int = 5) -> Problem:
    check_int("passkey", "digits", digits, 2, 12)
    key = number(rng, digits)
    wrong = distinct(lambda r: number(r, digits), rng, candidates - 1, {key})
    needle = f" The pass key is {key}. Remember it. {key} is the pass key."
    return Problem(INSTRUCTION, (Insert(needle, depth, target=True),), QUESTION, (key,), f" {key}",
                   tuple(f" {w}" for w in wrong), {"key": key})
