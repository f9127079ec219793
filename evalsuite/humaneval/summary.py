"""Aggregate votes with the key: win/tie/loss and win rate (Wilson CI) per system pair, Bradley–Terry scores when
more than two systems, inter-rater agreement, per-rater statistics; as metric rows of task `human_pref`.

Each rater's vote is one observation (a pair rated by three raters counts three times); a tie is half a win.
Agreement is computed on the winner label (a system name or "tie") of pairs rated by two or more raters: Cohen's
kappa when the bundle has exactly two raters, Krippendorff's alpha (nominal) otherwise.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

from ..metrics.agreement import cohen_kappa, krippendorff_alpha_nominal
from ..metrics.preference import bradley_terry, win_rate
from .bundle import BundleError

TASK = "human_pref"


def _vs(a: str, b: str) -> str:
    return f"{a} vs {b}"


def summarize(key: dict, votes: list[dict]) -> dict:
    """`votes`: dicts with rater, pair_id, choice (left/right/tie). Returns {"comparisons", "bradley_terry",
    "agreement", "raters", "rows"}; rows are metric rows {name, value, ci_low, ci_high, n, bin}."""
    systems = list(key["systems"])
    order = {s: i for i, s in enumerate(systems)}
    unknown = sorted({v["pair_id"] for v in votes} - set(key["pairs"]))
    if unknown:
        raise BundleError(f"key: {len(unknown)} voted pair(s) missing from the key (e.g. {unknown[0]}); wrong key file?")

    outcomes = []  # (first system, second system, score of first), systems in key order
    labels: dict[str, dict[str, str]] = defaultdict(dict)  # pair_id -> rater -> winner label
    per_rater: dict[str, dict] = defaultdict(lambda: {"left": 0, "right": 0, "tie": 0, "wtl": defaultdict(lambda: [0, 0, 0])})
    for v in votes:
        p = key["pairs"][v["pair_id"]]
        left, right = p["left"]["system"], p["right"]["system"]
        a, b = sorted((left, right), key=order.__getitem__)
        winner = {"left": left, "right": right, "tie": None}[v["choice"]]
        score = 0.5 if winner is None else float(winner == a)
        outcomes.append((a, b, score))
        labels[v["pair_id"]][v["rater"]] = winner or "tie"
        r = per_rater[v["rater"]]
        r[v["choice"]] += 1
        r["wtl"][(a, b)][{1.0: 0, 0.5: 1, 0.0: 2}[score]] += 1

    rows, comparisons = [], []
    for a, b in itertools.combinations(systems, 2):
        w = sum(1 for x, y, s in outcomes if (x, y) == (a, b) and s == 1.0)
        t = sum(1 for x, y, s in outcomes if (x, y) == (a, b) and s == 0.5)
        lo = sum(1 for x, y, s in outcomes if (x, y) == (a, b) and s == 0.0)
        n = w + t + lo
        rate, ci_low, ci_high = win_rate(w, t, lo)
        comparisons.append({"a": a, "b": b, "wins": w, "ties": t, "losses": lo, "n": n,
                            "win_rate": rate, "ci_low": ci_low, "ci_high": ci_high})
        if n:
            rows.append(_row("win_rate", rate, n, _vs(a, b), ci_low, ci_high))
            for name, value in (("wins", w), ("ties", t), ("losses", lo)):
                rows.append(_row(name, value, n, _vs(a, b)))

    bt = {}
    if len(systems) > 2:
        try:
            bt = bradley_terry(systems, outcomes)
        except ValueError:  # some system has no votes yet
            bt = {}
        for s, value in bt.items():
            rows.append(_row("bradley_terry", value, len(outcomes), s))

    agreement = _agreement(labels)
    if agreement["value"] is not None:
        rows.append(_row(agreement["statistic"], agreement["value"], agreement["n_pairs"], "all"))

    raters = []
    for name in sorted(per_rater):
        r = per_rater[name]
        n = r["left"] + r["right"] + r["tie"]
        entry = {"rater": name, "votes": n, "left": r["left"], "right": r["right"], "tie": r["tie"], "win_rate": {}}
        rows.append(_row("rater_left_share", r["left"] / n, n, f"rater={name}"))
        for (a, b), (w, t, lo) in sorted(r["wtl"].items()):
            rate, ci_low, ci_high = win_rate(w, t, lo)
            entry["win_rate"][_vs(a, b)] = rate
            rows.append(_row("rater_win_rate", rate, w + t + lo, f"{_vs(a, b)}|rater={name}", ci_low, ci_high))
        raters.append(entry)
    return {"comparisons": comparisons, "bradley_terry": bt, "agreement": agreement, "raters": raters, "rows": rows}


def _agreement(labels: dict[str, dict[str, str]]) -> dict:
    rater_names = sorted({r for by_rater in labels.values() for r in by_rater})
    shared = {pid: by for pid, by in labels.items() if len(by) >= 2}
    if len(rater_names) == 2:
        a_name, b_name = rater_names
        a = [by[a_name] for by in shared.values()]
        b = [by[b_name] for by in shared.values()]
        value, stat = cohen_kappa(a, b), "cohen_kappa"
    else:
        value = krippendorff_alpha_nominal([[by.get(r) for r in rater_names] for by in shared.values()])
        stat = "krippendorff_alpha"
    return {"statistic": stat, "value": None if math.isnan(value) else value, "n_pairs": len(shared),
            "raters": len(rater_names)}


def _row(name, value, n, bin_, ci_low=None, ci_high=None) -> dict:
    return {"name": name, "value": float(value), "ci_low": ci_low, "ci_high": ci_high, "n": int(n), "bin": bin_}


def format_table(summary: dict) -> str:
    lines = ["pair                          W    T    L    n   win rate  95% CI"]
    for c in summary["comparisons"]:
        rate = "   -   " if c["n"] == 0 else f"{c['win_rate']:.3f}  [{c['ci_low']:.3f}, {c['ci_high']:.3f}]"
        lines.append(f"{_vs(c['a'], c['b']):28s}{c['wins']:4d} {c['ties']:4d} {c['losses']:4d} {c['n']:4d}   {rate}")
    if summary["bradley_terry"]:
        lines.append("Bradley-Terry: " + ", ".join(f"{s} {v:.3f}" for s, v in summary["bradley_terry"].items()))
    ag = summary["agreement"]
    value = "n/a (too few pairs rated by two or more raters)" if ag["value"] is None else f"{ag['value']:.3f}"
    lines.append(f"agreement ({ag['statistic']}, {ag['raters']} raters, {ag['n_pairs']} shared pairs): {value}")
    for r in summary["raters"]:
        rates = ", ".join(f"{k} {v:.3f}" for k, v in r["win_rate"].items())
        lines.append(f"rater {r['rater']}: {r['votes']} votes (left {r['left']}, right {r['right']}, tie {r['tie']}); {rates}")
    return "\n".join(lines)
