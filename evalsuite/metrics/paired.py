"""Paired comparison of two systems on the same units (documents, prompts): a sign-flip permutation test of the
mean difference or a sign test of the median, the confidence interval that inverts the same test, and a verdict.

The difference is candidate - baseline per unit. The interval holds every shift the test would not reject, so it
excludes 0 exactly when the test rejects (p < alpha) and the verdict is not "no detectable difference". With few
units a test cannot reach p < alpha at all (the sign-flip test needs 6 pairs at alpha 0.05): `decidable` says so,
and such a comparison has no interval.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import binomtest


BETTER, NO_DIFFERENCE, WORSE = 1, 0, -1
VERDICT_NAMES = {BETTER: "better", NO_DIFFERENCE: "no detectable difference", WORSE: "worse"}
EXACT_PERMUTATION_MAX_N = 14  # 2^14 sign patterns; above this, Monte Carlo


def paired_differences(baseline, candidate) -> np.ndarray:
    """candidate - baseline for units where both are defined; ValueError when the arrays are not paired."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values need two 1-D arrays of equal length, got shapes {a.shape} and {b.shape}")
    d = b - a
    return d[~np.isnan(d)]


def _sign_patterns(n: int, n_perm: int, seed: int) -> tuple[np.ndarray, bool]:
    """All 2^n sign patterns for n <= 14 (exact test), else n_perm random ones; and whether it is exact."""
    if n <= EXACT_PERMUTATION_MAX_N:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n))), True
    return np.random.default_rng(seed).choice((1.0, -1.0), size=(n_perm, n)), False


def _permutation_p(d: np.ndarray, signs: np.ndarray, exact: bool) -> float:
    if not np.any(d):
        return 1.0
    count = np.sum(np.abs(signs @ d) >= abs(d.sum()) - 1e-12 * max(1.0, abs(d).sum()))
    return float(count / len(signs)) if exact else float((count + 1) / (len(signs) + 1))


def permutation_p_value(d, n_perm: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired permutation (sign-flip) test of mean(d) = 0: exact for n <= 14, else Monte Carlo with the
    (count + 1) / (n_perm + 1) correction. 1.0 when every difference is zero or there are none."""
    d = np.asarray(d, dtype=float)
    if d.size == 0:
        return 1.0
    return _permutation_p(d, *_sign_patterns(d.size, n_perm, seed))


def sign_test_p_value(d) -> float:
    """Two-sided sign test: among non-zero differences, are positives and negatives equally likely? 1.0 if none."""
    d = np.asarray(d, dtype=float)
    pos, neg = int(np.sum(d > 0)), int(np.sum(d < 0))
    return 1.0 if pos + neg == 0 else float(binomtest(pos, pos + neg, 0.5).pvalue)


def smallest_p_value(n: int, test: str = "permutation", n_perm: int = 10_000) -> float:
    """The smallest p-value the test can give with n paired units (all differences of one sign)."""
    if n == 0:
        return 1.0
    if test == "sign" or n <= EXACT_PERMUTATION_MAX_N:
        return min(1.0, 2 * 0.5 ** n)
    return 1 / (n_perm + 1)


def decidable(n: int, alpha: float = 0.05, test: str = "permutation", n_perm: int = 10_000) -> bool:
    """Whether n units can ever give p < alpha."""
    return smallest_p_value(n, test, n_perm) < alpha


def _boundary(accepts, inside: float, outside: float, steps: int = 60) -> float:
    """Bisection between a shift the test accepts and one it rejects: the last accepted shift."""
    for _ in range(steps):
        middle = (inside + outside) / 2
        inside, outside = (middle, outside) if accepts(middle) else (inside, middle)
    return inside


def inverted_ci(d, test: str = "permutation", alpha: float = 0.05, n_perm: int = 10_000,
                seed: int = 0) -> tuple[float, float]:
    """The shifts delta that the test of d - delta does not reject at alpha: for the sign-flip test an interval for
    the mean difference, for the sign test an interval for the median. NaN bounds when the n units cannot decide."""
    d = np.asarray(d, dtype=float)
    if not decidable(d.size, alpha, test, n_perm):
        return math.nan, math.nan
    if test == "sign":
        return _sign_ci(np.sort(d), alpha)
    signs, exact = _sign_patterns(d.size, n_perm, seed)

    def accepts(delta: float) -> bool:
        return _permutation_p(d - delta, signs, exact) >= alpha

    centre, reach = float(d.mean()), float(d.max() - d.min()) + abs(float(d.mean())) + 1.0
    return (_boundary(accepts, centre, centre - reach), _boundary(accepts, centre, centre + reach))


def _sign_ci(sorted_d: np.ndarray, alpha: float) -> tuple[float, float]:
    """Distribution-free interval for the median: with c = #(d > delta), the sign test accepts c in [k, n - k] (k the
    smallest accepted count), i.e. delta in [d_(k), d_(n-k+1)] (order statistics, 1-based)."""
    n = sorted_d.size
    k = next(c for c in range(n + 1) if binomtest(c, n, 0.5).pvalue >= alpha)
    return float(sorted_d[k - 1]), float(sorted_d[n - k])


def verdict(diff: float, p_value: float, alpha: float = 0.05, higher_is_better: bool = True) -> int:
    """BETTER / WORSE for the candidate when p < alpha, else NO_DIFFERENCE."""
    if math.isnan(diff) or math.isnan(p_value) or p_value >= alpha or diff == 0:
        return NO_DIFFERENCE
    return BETTER if (diff > 0) == higher_is_better else WORSE
