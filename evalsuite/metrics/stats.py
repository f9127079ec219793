"""Bootstrap over documents: resample whole documents with replacement, recompute the statistic, take percentiles."""
from __future__ import annotations

import warnings

import numpy as np


def bootstrap_indices(n_docs: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_docs) document indices drawn with replacement from a seeded generator."""
    return np.random.default_rng(seed).integers(0, n_docs, size=(n_boot, n_docs))


def percentile_ci(replicates: np.ndarray, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 (the replicates), ignoring replicates where the statistic is undefined (NaN);
    a column with no defined replicate gets NaN bounds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (np.nanpercentile(replicates, 100 * alpha / 2, axis=0),
                np.nanpercentile(replicates, 100 * (1 - alpha / 2), axis=0))
