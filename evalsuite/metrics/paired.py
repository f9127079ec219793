"""Paired comparison of two systems on the same units (documents, prompts): mean difference with a paired bootstrap
CI, a sign-flip permutation test and a sign test, and a verdict.

The difference is candidate - baseline per unit. A verdict needs p < alpha; its direction follows the mean
difference and whether higher values of the metric are better.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import binomtest

from .stats import bootstrap_indices, percentile_ci

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


def paired_bootstrap_ci(d, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """Mean of the paired differences `d` and its percentile CI from resampling units with replacement."""
    d = np.asarray(d, dtype=float)
    if d.size == 0:
        return math.nan, math.nan, math.nan
    reps = d[bootstrap_indices(d.size, n_boot, seed)].mean(axis=1)
    low, high = percentile_ci(reps[:, None], alpha)
    return float(d.mean()), float(low[0]), float(high[0])


def permutation_p_value(d, n_perm: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired permutation (sign-flip) test of mean(d) = 0: exact for n <= 14, else Monte Carlo with the
    (count + 1) / (n_perm + 1) correction. 1.0 when every difference is zero or there are none."""
    d = np.asarray(d, dtype=float)
    if d.size == 0 or not np.any(d):
        return 1.0
    observed = abs(d.mean())
    if d.size <= EXACT_PERMUTATION_MAX_N:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        stats = np.abs((signs * d).mean(axis=1))
        return float(np.mean(stats >= observed - 1e-12))
    signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_perm, d.size))
    stats = np.abs((signs * d).mean(axis=1))
    return float((np.sum(stats >= observed - 1e-12) + 1) / (n_perm + 1))


def sign_test_p_value(d) -> float:
    """Two-sided sign test: among non-zero differences, are positives and negatives equally likely? 1.0 if none."""
    d = np.asarray(d, dtype=float)
    pos, neg = int(np.sum(d > 0)), int(np.sum(d < 0))
    return 1.0 if pos + neg == 0 else float(binomtest(pos, pos + neg, 0.5).pvalue)


def verdict(mean_diff: float, p_value: float, alpha: float = 0.05, higher_is_better: bool = True) -> int:
    """BETTER / WORSE for the candidate when p < alpha, else NO_DIFFERENCE."""
    if math.isnan(mean_diff) or math.isnan(p_value) or p_value >= alpha or mean_diff == 0:
        return NO_DIFFERENCE
    return BETTER if (mean_diff > 0) == higher_is_better else WORSE
