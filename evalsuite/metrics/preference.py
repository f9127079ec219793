"""Pairwise preference statistics: Wilson score interval and Bradley–Terry strengths.

Pure functions on counts; the human-eval summary (evalsuite.humaneval.summary) feeds them votes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Z_95 = 1.959963984540054


def wilson_interval(successes: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion successes/n.

    `successes` may be fractional (a tie counted as half a win); n == 0 gives the uninformative (0, 1).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"wilson_interval: need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def win_rate(wins: int, ties: int, losses: int, z: float = Z_95) -> tuple[float, float, float]:
    """(rate, ci_low, ci_high) with a tie as half a win: rate = (wins + ties/2) / (wins + ties + losses)."""
    n = wins + ties + losses
    if n == 0:
        return math.nan, 0.0, 1.0
    s = wins + 0.5 * ties
    low, high = wilson_interval(s, n, z)
    return s / n, low, high


def bradley_terry(
    systems: Sequence[str],
    outcomes: Iterable[tuple[str, str, float]],
    max_iter: int = 10_000,
    tol: float = 1e-10,
) -> dict[str, float]:
    """Bradley–Terry strengths p_i (summing to 1) fitted by Hunter's MM algorithm.

    `outcomes` are (i, j, s) with s the score of i against j: 1 win, 0.5 tie, 0 loss. P(i beats j) = p_i/(p_i+p_j).
    MM update: p_i <- W_i / sum_j n_ij / (p_i + p_j), W_i = total score of i, n_ij = comparisons of i and j.
    A system that never scores tends to 0 (the maximum-likelihood estimate is on the boundary).
    """
    idx = {s: k for k, s in enumerate(systems)}
    m = len(systems)
    if m < 2:
        raise ValueError(f"bradley_terry: need at least 2 systems, got {list(systems)}")
    wins = [0.0] * m
    n = [[0.0] * m for _ in range(m)]
    for a, b, s in outcomes:
        if a not in idx or b not in idx or a == b:
            raise ValueError(f"bradley_terry: outcome ({a!r}, {b!r}) names an unknown system or the same one twice")
        if s not in (0, 0.5, 1):
            raise ValueError(f"bradley_terry: score must be 0, 0.5 or 1, got {s!r}")
        i, j = idx[a], idx[b]
        wins[i] += s
        wins[j] += 1 - s
        n[i][j] += 1
        n[j][i] += 1
    for i in range(m):
        if sum(n[i]) == 0:
            raise ValueError(f"bradley_terry: system {systems[i]!r} has no comparisons")
    p = [1.0 / m] * m
    for _ in range(max_iter):
        new = []
        for i in range(m):
            denom = sum(n[i][j] / (p[i] + p[j]) for j in range(m) if j != i and n[i][j])
            new.append(wins[i] / denom)
        total = sum(new)
        new = [x / total for x in new]
        delta = max(abs(x - y) for x, y in zip(new, p))
        p = new
        if delta < tol:
            break
    return {s: p[k] for s, k in idx.items()}
