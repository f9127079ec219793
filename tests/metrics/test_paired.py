"""Permutation and sign tests, the intervals that invert them, decidability and the verdict, against values computed
by hand, and the interval agreeing with the test on random samples."""

import math

import numpy as np
import pytest

from evalsuite.metrics.paired import (BETTER, NO_DIFFERENCE, WORSE, decidable, inverted_ci, paired_differences,
                                      permutation_p_value, sign_test_p_value, smallest_p_value, verdict)


def test_differences_drop_unpaired_nan_and_refuse_mismatch():
    np.testing.assert_array_equal(paired_differences([1, 2, np.nan], [2, 4, 5]), [1, 2])
    with pytest.raises(ValueError, match="equal length"):
        paired_differences([1, 2], [1])


def test_exact_permutation_by_hand():
    # d = (1, 2, 3): of the 8 sign patterns only +++ and --- reach |mean| >= 2 -> p = 2/8
    assert permutation_p_value([1, 2, 3]) == pytest.approx(0.25)
    # d = (1, -1): every pattern has |mean| 0 or 1 >= 0 -> p = 1
    assert permutation_p_value([1, -1]) == pytest.approx(1.0)
    assert permutation_p_value([0, 0, 0]) == 1.0 and permutation_p_value([]) == 1.0


def test_monte_carlo_permutation_on_a_clear_shift():
    d = np.full(40, 0.5) + np.random.default_rng(0).normal(0, 0.1, 40)
    p = permutation_p_value(d, n_perm=2000)
    assert p == pytest.approx(1 / 2001)


def test_sign_test_by_hand():
    # 5 positive of 5: two-sided p = 2 * 0.5^5
    assert sign_test_p_value([1, 2, 3, 4, 5]) == pytest.approx(2 / 32)
    assert sign_test_p_value([0, 0]) == 1.0
    assert sign_test_p_value([1, -1, 0]) == pytest.approx(1.0)


def test_too_few_pairs_cannot_decide_and_have_no_interval():
    """n = 2, both differences positive: p = 0.5 is the best the sign-flip test can do, so no interval may exclude 0
    (a bootstrap interval did, while the verdict said 'no detectable difference')."""
    assert permutation_p_value([0.4, 0.6]) == pytest.approx(0.5)
    assert smallest_p_value(2) == pytest.approx(0.5) and not decidable(2) and not decidable(5) and decidable(6)
    assert all(math.isnan(x) for x in inverted_ci([0.4, 0.6]))
    assert not decidable(5, test="sign") and decidable(6, test="sign")


def test_inverted_intervals_by_hand():
    low, high = inverted_ci([0.3] * 10)  # a constant difference: only that shift is accepted
    assert low == pytest.approx(0.3, abs=1e-9) and high == pytest.approx(0.3, abs=1e-9)
    d = np.arange(1.0, 11.0)  # sign test, n = 10, alpha 0.05: counts 2..8 accepted -> [d_(2), d_(9)]
    assert inverted_ci(d, "sign") == (2.0, 9.0)


@pytest.mark.parametrize("test", ["permutation", "sign"])
def test_the_interval_excludes_zero_exactly_when_the_test_rejects(test):
    rng = np.random.default_rng(0)
    for n in (6, 9, 14, 25):
        for _ in range(25 if n <= 14 else 6):
            d = rng.normal(rng.uniform(-1, 1), 1, n)
            p = permutation_p_value(d, n_perm=2000, seed=1) if test == "permutation" else sign_test_p_value(d)
            low, high = inverted_ci(d, test, n_perm=2000, seed=1)
            assert low <= (d.mean() if test == "permutation" else np.median(d)) <= high
            assert (p < 0.05) == (not low <= 0 <= high), (n, p, low, high)


def test_verdict_direction_follows_higher_is_better():
    assert verdict(0.5, 0.01) == BETTER
    assert verdict(0.5, 0.01, higher_is_better=False) == WORSE
    assert verdict(-0.5, 0.01, higher_is_better=False) == BETTER
    assert verdict(0.5, 0.2) == NO_DIFFERENCE
    assert verdict(float("nan"), 0.01) == NO_DIFFERENCE
