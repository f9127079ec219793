"""Repetition, diversity, slope and loop detection on hand-built sequences with known answers."""

import math
import random

import pytest

from evalsuite.metrics.degeneration import detect_loop, distinct_n, rep_l, seq_rep_n, slope


def test_seq_rep_and_distinct_by_hand():
    items = "a b c a b c a b".split()  # 4-grams: abca bcab cabc abca bcab -> 3 unique of 5
    assert seq_rep_n(items, 4) == pytest.approx(1 - 3 / 5)
    assert distinct_n(items, 4) == pytest.approx(3 / 5)
    assert distinct_n(items, 1) == pytest.approx(3 / 8)
    assert math.isnan(seq_rep_n(["a", "b"], 4)) and math.isnan(distinct_n([], 1))


def test_looping_text_has_seq_rep_4_near_one_and_fresh_text_zero():
    loop = ("the cat sat on the mat . " * 200).split()
    assert seq_rep_n(loop, 4) > 0.99
    fresh = list(range(1000))
    assert seq_rep_n(fresh, 4) == 0.0 and distinct_n(fresh, 2) == 1.0


def test_rep_l_by_hand():
    # positions 1..5 of a b a c b a: a(2) seen at 0 (d=2), c new, b(4) seen at 1 (d=3), a(5) seen at 2 (d=3)
    items = list("abacba")
    assert rep_l(items, 128) == pytest.approx(3 / 5)
    assert rep_l(items, 2) == pytest.approx(1 / 5)  # only a at 2 is within 2 back
    assert math.isnan(rep_l(["x"], 4))
    with pytest.raises(ValueError, match="l >= 1"):
        rep_l(items, 0)


def test_slope_by_hand_and_with_nan():
    assert slope([1, 3, 5]) == pytest.approx(2.0)
    assert slope([0, float("nan"), 2], xs=[0, 1, 2]) == pytest.approx(1.0)
    assert math.isnan(slope([1.0]))
    with pytest.raises(ValueError, match="x values"):
        slope([1, 2], xs=[1])


def test_loop_detected_where_it_starts():
    rng = random.Random(0)
    prefix = [rng.randrange(10_000) for _ in range(300)]
    block = [rng.randrange(10_000, 20_000) for _ in range(7)]
    assert detect_loop(prefix + block * 20) == 300
    assert detect_loop(prefix + [5] * 40) == 300
    assert detect_loop(prefix) is None
    assert detect_loop(prefix + [5] * 10 + prefix) is None  # a short stutter is not a loop
    assert detect_loop([]) is None
