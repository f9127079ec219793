"""RULER's variable tracking: chains of assignments (VAR A = 12345 ... VAR B = A ...) spread through a haystack; name
every variable that holds the queried value. The queried chain is the target: its first assignment at the sample's
depth, the next hops spread from there to the end, in order; the other chains (other values) at random depths, each
in its own order. Their variable lists are the hardest wrong answers."""
from __future__ import annotations

import random

from .problems import Insert, Problem, check_int, distinct, distractor_lists, join, number, spread, variable

INSTRUCTION = "Memorize and track the chain(s) of variable assignment hidden in the following text."


def make(rng: random.Random, depth: float, *, candidates: int, hops: int = 4, chains: int = 4,
         digits: int = 5) -> Problem:
    check_int("variable_tracking", "hops", hops, 1)
    check_int("variable_tracking", "chains", chains, 1)
    check_int("variable_tracking", "digits", digits, 2, 12)
    taken: set[str] = set()
    values = distinct(lambda r: number(r, digits), rng, chains, taken)
    names = [distinct(variable, rng, hops + 1, taken) for _ in values]
    inserts = []
    for c, (value, chain) in enumerate(zip(values, names)):
        depths = spread(depth, hops + 1) if c == 0 else sorted(rng.random() for _ in chain)
        sources = [value, *chain[:-1]]
        inserts += [Insert(f" VAR {name} = {src}.", d, target=c == 0) for name, src, d in zip(chain, sources, depths)]
    answer = names[0]
    hard = [n for chain in names[1:] for n in chain]
    wrong = distractor_lists(answer, hard, variable, rng, candidates - 1, taken)
    question = (f"Question: Find all variables that are assigned the value {values[0]} in the text above. Answer: "
                f"According to the chain(s) of variable assignment in the text above, {hops + 1} variables are "
                f"assigned the value {values[0]}, they are:")
    return Problem(INSTRUCTION, tuple(inserts), question, tuple(answer), join(answer), tuple(join(w) for w in wrong),
                   {"value": values[0]})
