"""What a retrieval sample is before any tokenizer sees it: sentences to hide in a haystack (each at a depth), the
question that ends the prompt, the values a right answer holds, and wrong answers of the same form.

Generators (passkey, niah, variable_tracking, book_facts) build a `Problem` from a seeded `random.Random`; the same
seed gives the same problem. `evalsuite.retrieval.prompt` then lays it out in tokens of a model's tokenizer.
"""
from __future__ import annotations

import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import EvalsuiteError
from ..metrics.retrieval import normalize
from .words import ADJECTIVES, NOUNS


class RetrievalError(EvalsuiteError, ValueError):
    """A sample that cannot be built or read with these inputs (e.g. a length too short for it)."""


@dataclass(frozen=True)
class Insert:
    """A sentence hidden in the haystack. `depth` is the share of the haystack placed before it (0 = first, 1 = last);
    a `target` carries (part of) the answer. Inserts that land on one spot keep their order in `Problem.inserts`."""

    text: str  # with its leading space: " The pass key is 71432."
    depth: float
    target: bool = False


@dataclass(frozen=True)
class Problem:
    instruction: str  # before the haystack
    inserts: tuple[Insert, ...]
    question: str  # after the haystack; ends where the answer starts ("... The pass key is")
    answers: tuple[str, ...]  # values a generated answer must all contain
    answer: str  # the right continuation, ranked against the distractors
    distractors: tuple[str, ...]  # wrong continuations of the same form
    info: dict = field(default_factory=dict)  # what else describes the sample (stored with it)

    def __post_init__(self):
        if not any(i.target for i in self.inserts):
            raise ValueError("a problem needs at least one target insert (where the answer is hidden)")
        if not all(0.0 <= i.depth <= 1.0 for i in self.inserts):
            raise ValueError(f"insert depths must be in [0, 1], got {[i.depth for i in self.inserts]}")
        forms = [answer_key(self.answer), *map(answer_key, self.distractors)]
        if len(set(forms)) != len(forms):
            raise ValueError(f"distractors must differ from the answer and from each other: {self.answer!r} vs "
                             f"{list(self.distractors)}")

    @property
    def candidates(self) -> tuple[str, ...]:
        """The right answer first, then the distractors."""
        return (self.answer, *self.distractors)

    @property
    def depth(self) -> float:
        """Depth of the first target insert: the sample's depth."""
        return next(i.depth for i in self.inserts if i.target)


def answer_key(text: str) -> frozenset[str]:
    """What makes two answers the same: their normalised values as a set (order and punctuation aside)."""
    return frozenset(v for v in normalize(text.replace(",", " ")).split())


def check_int(task: str, name: str, value, low: int, high: int | None = None) -> None:
    """A generator's integer option, or a ValueError naming it and the range expected."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        expected = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
        raise ValueError(f"{task}: {name} must be {expected}, got {value!r}")


def spread(depth: float, m: int) -> list[float]:
    """Depths of m target inserts: the first at `depth`, the others evenly between it and the end."""
    return [depth + (1.0 - depth) * i / m for i in range(m)]


# --- values ------------------------------------------------------------------------------------------------------


def number(rng: random.Random, digits: int = 7) -> str:
    return str(rng.randrange(10 ** (digits - 1), 10 ** digits))


def word(rng: random.Random) -> str:
    return f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"


def uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def variable(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(5))


MAKERS: dict[str, Callable[[random.Random], str]] = {"numbers": number, "words": word, "uuids": uuid4}


def distinct(make: Callable[[random.Random], str], rng: random.Random, n: int, taken: set[str]) -> list[str]:
    """n new values, none in `taken` (which grows by them)."""
    out = []
    for _ in range(1000 * n + 1000):
        if len(out) == n:
            break
        v = make(rng)
        if v not in taken:
            taken.add(v)
            out.append(v)
    if len(out) < n:
        raise ValueError(f"cannot draw {n} distinct values of this form (only {len(out)} found)")
    return out


def distractor_lists(answer: list[str], hard: list[str], make: Callable[[random.Random], str], rng: random.Random,
                     k: int, taken: set[str]) -> list[list[str]]:
    """k wrong answers shaped like `answer` (a list of values): chunks of `hard` first (values that are in the text,
    such as other keys' values), then new values drawn by `make`."""
    size, out = len(answer), []
    pool = list(hard)
    while len(out) < k and len(pool) >= size:
        out.append(pool[:size])
        pool = pool[size:]
    while len(out) < k:
        out.append(pool + distinct(make, rng, size - len(pool), taken))
        pool = []
    return out


def join(values: list[str]) -> str:
    """An answer continuation: the values after one space, comma-separated."""
    return " " + ", ".join(values)
