"""BABILong-style facts in a book (Kuratov et al. 2024): short bAbI-like facts about people, objects and places
hidden in book text, one question at the end, answered by a place.

  1 supporting fact    "Mary went to the kitchen."                         Where is Mary?          kitchen
  2 supporting facts   "John picked up the apple." "John went to the hallway."   Where is the apple?   hallway
  3 supporting facts   "Fred took the milk." "Fred gave the milk to Julie." "Julie went to the office."
                                                                                   Where is the milk?    office
The supporting facts are the targets: the first at the sample's depth, the others spread from there to the end, in
order. With one supporting fact, an earlier move of the same person comes before it (the answer is the latest
place). Distractor facts move and load other people with other objects, at random depths, so they never change the
answer; the places they name are the hardest wrong answers.
"""
from __future__ import annotations

import random

from .problems import Insert, Problem, check_int, spread
from .words import GIVE_VERBS, MOVE_VERBS, OBJECTS, PEOPLE, PLACES, TAKE_VERBS

INSTRUCTION = ("Below is a text with facts about people, objects and places hidden in it. Read it and answer the "
               "question at the end with one word.")


def make(rng: random.Random, depth: float, *, candidates: int, supporting_facts: list[int] | int = (1, 2, 3),
         distractor_facts: int = 4) -> Problem:
    options = [supporting_facts] if isinstance(supporting_facts, int) else list(supporting_facts)
    if not options or any(m not in (1, 2, 3) or isinstance(m, bool) for m in options):
        raise ValueError(f"book_facts: supporting_facts must be 1, 2 or 3 (or a list of them), got {supporting_facts!r}")
    check_int("book_facts", "distractor_facts", distractor_facts, 0)
    check_int("book_facts", "candidates", candidates, 2, len(PLACES))
    m = rng.choice(options)
    people, places, objects = rng.sample(PEOPLE, len(PEOPLE)), rng.sample(PLACES, len(PLACES)), \
        rng.sample(OBJECTS, len(OBJECTS))
    place = places.pop()
    move, take, give = rng.choice(MOVE_VERBS), rng.choice(TAKE_VERBS), rng.choice(GIVE_VERBS)
    before: list[Insert] = []
    mentioned: list[str] = []
    if m == 1:
        who = people.pop()
        earlier = places.pop()
        mentioned.append(earlier)
        before = [Insert(f" {who} {rng.choice(MOVE_VERBS)} the {earlier}.", depth * rng.random())]
        facts, question = [f" {who} {move} the {place}."], f"Where is {who}? Answer: {who} is in the"
    else:
        thing = objects.pop()
        holder = people.pop()
        facts = [f" {holder} {take} the {thing}."]
        if m == 3:
            receiver = people.pop()
            facts.append(f" {holder} {give} the {thing} to {receiver}.")
            holder = receiver
        facts.append(f" {holder} {move} the {place}.")
        question = f"Where is the {thing}? Answer: The {thing} is in the"
    inserts = before + [Insert(f, d, target=True) for f, d in zip(facts, spread(depth, len(facts)))]
    for _ in range(distractor_facts):
        other = rng.choice(people)
        if rng.random() < 0.5 or not objects:
            where = rng.choice([p for p in PLACES if p != place])
            mentioned.append(where)
            inserts.append(Insert(f" {other} {rng.choice(MOVE_VERBS)} the {where}.", rng.random()))
        else:
            inserts.append(Insert(f" {other} {rng.choice(TAKE_VERBS)} the {rng.choice(objects)}.", rng.random()))
    hard = list(dict.fromkeys(mentioned))
    wrong = (hard + [p for p in places if p not in hard])[:candidates - 1]
    return Problem(INSTRUCTION, tuple(inserts), f"Question: {question}", (place,), f" {place}",
                   tuple(f" {w}" for w in wrong), {"supporting_facts": m})
