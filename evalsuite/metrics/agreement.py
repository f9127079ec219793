"""Inter-rater agreement on nominal labels: Cohen's kappa (two raters), Krippendorff's alpha (any number)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two raters who labelled the same items in the same order.

    kappa = (p_o - p_e) / (1 - p_e). When chance agreement is certain (both always gave one same label) kappa is
    undefined and NaN is returned.
    """
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: the two label lists differ in length ({len(a)} vs {len(b)})")
    n = len(a)
    if n == 0:
        return math.nan
    p_o = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if p_e == 1:
        return math.nan
    return (p_o - p_e) / (1 - p_e)


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable | None]]) -> float:
    """Krippendorff's alpha for nominal data.

    `units` holds one sequence per unit (item) with the label each rater gave, None where a rater gave none.
    Units with fewer than two labels are not pairable and are dropped. alpha = 1 - D_o / D_e computed from the
    coincidence matrix: alpha = 1 - (n - 1) * sum_{c!=k} o_ck / sum_{c!=k} n_c n_k. NaN when undefined.
    """
    coincid: Counter = Counter()
    for unit in units:
        vals = [v for v in unit if v is not None]
        m = len(vals)
        if m < 2:
            continue
        counts = Counter(vals)
        for c, nc in counts.items():
            for k, nk in counts.items():
                pairs = nc * (nk - 1) if c == k else nc * nk
                coincid[(c, k)] += pairs / (m - 1)
    n_c: Counter = Counter()
    for (c, _k), v in coincid.items():
        n_c[c] += v
    n = sum(n_c.values())
    if n <= 1:
        return math.nan
    observed = sum(v for (c, k), v in coincid.items() if c != k)
    expected = sum(n_c[c] * n_c[k] for c in n_c for k in n_c if c != k)
    if expected == 0:
        return math.nan
    return 1 - (n - 1) * observed / expected
