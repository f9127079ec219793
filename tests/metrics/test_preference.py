"""Wilson interval, win rate and Bradley–Terry against values computed by hand."""

import math

import pytest

from evalsuite.metrics.preference import bradley_terry, wilson_interval, win_rate


def test_wilson_8_of_10_by_hand():
    # p=0.8, z=1.96: centre = (0.8 + 1.96^2/20) / (1 + 1.96^2/10) = 0.716738,
    # half = 1.96 * sqrt(0.8*0.2/10 + 1.96^2/400) / 1.38416 = 0.226580
    low, high = wilson_interval(8, 10, z=1.96)
    assert low == pytest.approx(0.716738 - 0.226580, abs=1e-5)
    assert high == pytest.approx(0.716738 + 0.226580, abs=1e-5)


def test_wilson_edges_and_bad_input():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(0, 5)
    assert low == 0.0 and 0 < high < 1
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(6, 5)


def test_win_rate_counts_tie_as_half():
    rate, low, high = win_rate(wins=5, ties=2, losses=3)
    assert rate == pytest.approx(0.6)
    assert (low, high) == pytest.approx(wilson_interval(6, 10))
    assert math.isnan(win_rate(0, 0, 0)[0])


def test_bradley_terry_recovers_exact_three_system_fit():
    # Data matching p = (4, 2, 1)/7 exactly: P(A>B)=2/3 (2 of 3), P(B>C)=2/3 (2 of 3), P(A>C)=4/5 (4 of 5).
    # The ML equations W_i = sum_j n_ij p_i/(p_i+p_j) hold: A 2+4=6, B 1+2=3, C 1+1=2.
    out = [("A", "B", 1)] * 2 + [("A", "B", 0)] + [("B", "C", 1)] * 2 + [("B", "C", 0)]
    out += [("A", "C", 1)] * 4 + [("C", "A", 1)]
    p = bradley_terry(["A", "B", "C"], out)
    assert p["A"] == pytest.approx(4 / 7, abs=1e-6)
    assert p["B"] == pytest.approx(2 / 7, abs=1e-6)
    assert p["C"] == pytest.approx(1 / 7, abs=1e-6)


def test_bradley_terry_ties_are_half_wins():
    # A: 1 win + 1 tie = 1.5 of 2 -> p_A/(p_A+p_B) = 0.75
    p = bradley_terry(["A", "B"], [("A", "B", 1), ("A", "B", 0.5)])
    assert p["A"] == pytest.approx(0.75, abs=1e-6)
    even = bradley_terry(["A", "B", "C"], [("A", "B", 1), ("B", "C", 1), ("C", "A", 1)])
    assert all(v == pytest.approx(1 / 3) for v in even.values())


def test_bradley_terry_bad_input():
    with pytest.raises(ValueError, match="no comparisons"):
        bradley_terry(["A", "B", "C"], [("A", "B", 1)])
    with pytest.raises(ValueError, match="unknown system"):
        bradley_terry(["A", "B"], [("A", "Z", 1)])
