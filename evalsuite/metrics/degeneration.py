"""Repetition and diversity of a generated sequence (Welleck et al. 2019, "Neural Text Generation with Unlikelihood
Training"; Li et al. 2016 for distinct-n), the slope of a per-window metric, and loop detection.

All functions take a sequence of hashable items (token ids, or words) and are pure.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def ngrams(items: Sequence, n: int) -> list[tuple]:
    if n < 1:
        raise ValueError(f"n-gram order must be at least 1, got {n}")
    return [tuple(items[i:i + n]) for i in range(len(items) - n + 1)]


def seq_rep_n(items: Sequence, n: int = 4) -> float:
    """Welleck's seq-rep-n: the share of duplicate n-grams, 1 - |unique n-grams| / |n-grams|. NaN if shorter than n."""
    grams = ngrams(items, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else math.nan


def rep_l(items: Sequence, l: int = 128) -> float:  # noqa: E741  (the paper's name)
    """Welleck's token-level rep/l: the share of positions whose item already occurred in the previous l items.
    NaN for fewer than two items (no position has a context)."""
    if l < 1:
        raise ValueError(f"rep/l needs a context length l >= 1, got {l}")
    if len(items) < 2:
        return math.nan
    last: dict = {}
    hits = 0
    for t, x in enumerate(items):
        if x in last and t - last[x] <= l:
            hits += 1
        last[x] = t
    return hits / (len(items) - 1)


def distinct_n(items: Sequence, n: int = 2) -> float:
    """distinct-n: |unique n-grams| / |n-grams| (Li et al. 2016). NaN if shorter than n."""
    grams = ngrams(items, n)
    return len(set(grams)) / len(grams) if grams else math.nan


def slope(values: Sequence[float], xs: Sequence[float] | None = None) -> float:
    """Least-squares slope of `values` against `xs` (default 0, 1, 2, ...), ignoring NaN; NaN with < 2 points."""
    y = np.asarray(values, dtype=float)
    x = np.arange(len(y), dtype=float) if xs is None else np.asarray(xs, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"slope: {len(x)} x values for {len(y)} values")
    ok = ~np.isnan(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return math.nan
    return float(np.polyfit(x[ok], y[ok], 1)[0])


def detect_loop(items: Sequence, max_period: int = 256, min_repeats: int = 3, min_span: int = 32) -> int | None:
    """Index of the first item of the earliest loop, or None.

    A loop is a stretch that repeats one block of p <= max_period items at least `min_repeats` times in a row and
    covers at least `min_span` items (so "the the the" is not a loop, but 32 identical tokens are).
    """
    x = np.asarray([hash(i) for i in items], dtype=np.int64)
    best: int | None = None
    for p in range(1, min(max_period, len(x) // min_repeats) + 1):
        need = max(p * (min_repeats - 1), min_span - p)  # run of x[t] == x[t+p] this long: span = run + p
        same = x[:-p] == x[p:]
        if same.sum() < need:
            continue
        # lengths of runs of True ending at each position, via cumulative sums reset at False
        idx = np.arange(len(same))
        last_false = np.maximum.accumulate(np.where(same, -1, idx))
        run = idx - last_false
        hits = np.flatnonzero(run >= need)
        if hits.size:
            start = int(hits[0] - need + 1)
            best = start if best is None else min(best, start)
    return best
