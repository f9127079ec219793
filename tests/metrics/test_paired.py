"""Paired bootstrap, permutation and sign tests, and the verdict, against values computed by hand."""

import math

import numpy as np
import pytest

from evalsuite.metrics.paired import (BETTER, NO_DIFFERENCE, WORSE, paired_bootstrap_ci, paired_differences,
                                      permutation_p_value, sign_test_p_value, verdict)


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


def test_bootstrap_ci_of_a_constant_difference_is_that_constant():
    mean, low, high = paired_bootstrap_ci([0.3] * 10, n_boot=200)
    assert (mean, low, high) == pytest.approx((0.3, 0.3, 0.3))
    mean, low, high = paired_bootstrap_ci(np.arange(10.0), n_boot=500, seed=1)
    assert mean == 4.5 and low < 4.5 < high
    assert all(math.isnan(x) for x in paired_bootstrap_ci([]))


def test_verdict_direction_follows_higher_is_better():
    assert verdict(0.5, 0.01) == BETTER
    assert verdict(0.5, 0.01, higher_is_better=False) == WORSE
    assert verdict(-0.5, 0.01, higher_is_better=False) == BETTER
    assert verdict(0.5, 0.2) == NO_DIFFERENCE
    assert verdict(float("nan"), 0.01) == NO_DIFFERENCE
