"""Scoring retrieval answers and summarising them: RULER-style matching of a generated answer, ranking by
log-likelihood, and accuracy per (length, depth) cell, per length and overall with Wilson 95% intervals.

Bins: "length=L,depth=D" (D in percent) for a cell, "length=L" for all depths at one length, "" for the whole run,
and "distance=N" for the samples whose needle lies N or more tokens before the question (the largest of
DISTANCE_GRID at or below the needle's distance; a fixed-distance task names its own distances, and its cells are
"length=L,distance=N"). A sample row's bin is its cell with ",distance=N" appended.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from .preference import wilson_interval

KINDS = ("passkey", "niah", "variable_tracking", "book_facts")  # the task kinds that write these metrics
METRICS = ("rank_accuracy", "generate_accuracy")
_NOT_VALUE = re.compile(r"[^a-z0-9-]+")
_BIN = re.compile(r"length=(\d+),depth=(\d+)")
_SAMPLE_BIN = re.compile(r"length=(\d+)(?:,depth=(\d+))?(?:,distance=(\d+))?")
DISTANCE_GRID = (0, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)


def normalize(text: str) -> str:
    """Lowercase; anything but letters, digits and hyphens becomes a space; spaces collapsed."""
    return " ".join(_NOT_VALUE.sub(" ", text.lower()).split())


def answer_line(output: str) -> str:
    """The first non-empty line of a generated answer (a model that goes on after its answer is not penalised)."""
    return output.lstrip().split("\n", 1)[0]


def all_values_present(output: str, values: Sequence[str]) -> bool:
    """RULER's match: every expected value appears, as whole words after normalisation, in the answer line."""
    if not values:
        raise ValueError("all_values_present: no expected values given")
    line = f" {normalize(answer_line(output))} "
    return all(f" {normalize(v)} " in line for v in values)


def rank_correct(logprobs: Sequence[float]) -> bool:
    """The right answer (index 0) scores strictly higher than every distractor; a tie is not a success."""
    if len(logprobs) < 2:
        raise ValueError(f"rank_correct: need the answer and at least one distractor, got {len(logprobs)} scores")
    return logprobs[0] > max(logprobs[1:])


def cell_bin(length: int, depth: int) -> str:
    return f"length={length},depth={depth}"


def distance_bin(distance: int) -> int:
    """The DISTANCE_GRID value a needle `distance` tokens before the question is reported under."""
    return max(g for g in DISTANCE_GRID if g <= max(distance, 0))


def parse_sample_bin(bin_: str) -> tuple[int, int | None, int | None]:
    """(length, depth or None, distance or None) of a sample row's bin."""
    m = _SAMPLE_BIN.fullmatch(bin_)
    if not m or (m.group(2) is None and m.group(3) is None):
        raise ValueError(f"bin {bin_!r} is not a retrieval cell (a sample bin); expected "
                         "'length=L,depth=D[,distance=N]' or 'length=L,distance=N'")
    return int(m.group(1)), *(None if g is None else int(g) for g in m.group(2, 3))


def parse_cell(bin_: str) -> tuple[int, int]:
    m = _BIN.fullmatch(bin_)
    if not m:
        raise ValueError(f"bin {bin_!r} is not a retrieval cell; expected 'length=L,depth=D'")
    return int(m.group(1)), int(m.group(2))


def accuracy_rows(name: str, samples: pd.DataFrame) -> list[dict]:
    """Metric rows `name` from 0/1 sample rows (columns bin = sample bin, value): the mean with its Wilson interval
    and n per cell, per needle distance (when the samples know it), per length (all depths) and for the whole run
    (bin "")."""
    cells = [parse_sample_bin(b) for b in samples["bin"]]
    df = pd.DataFrame({"length": [c[0] for c in cells], "depth": [c[1] for c in cells],
                       "distance": [c[2] for c in cells], "value": samples["value"].astype(float).to_numpy()})
    if not df["value"].isin([0.0, 1.0]).all():
        raise ValueError(f"{name}: sample values must be 0 or 1, got {sorted(set(df['value']) - {0.0, 1.0})[:5]}")
    rows = []
    by_depth = df[df["depth"].notna()]
    for (length, depth), part in by_depth.groupby(["length", "depth"], sort=True):
        rows.append(_row(name, cell_bin(length, int(depth)), part["value"]))
    fixed = df[df["depth"].isna()]  # fixed-distance samples: cells are (length, distance)
    for (length, distance), part in fixed.groupby(["length", "distance"], sort=True):
        rows.append(_row(name, f"length={length},distance={int(distance)}", part["value"]))
    for distance, part in df[df["distance"].notna()].groupby("distance", sort=True):
        rows.append(_row(name, f"distance={int(distance)}", part["value"]))
    for length, part in df.groupby("length", sort=True):
        rows.append(_row(name, f"length={length}", part["value"]))
    rows.append(_row(name, "", df["value"]))
    return rows


def _row(name: str, bin_: str, values: pd.Series) -> dict:
    n, k = int(values.size), float(values.sum())
    low, high = wilson_interval(k, n)
    low, high = (0.0 if k == 0 else low), (1.0 if k == n else high)  # exact at the ends (rounding gives 3e-17)
    return dict(name=name, bin=bin_, value=k / n, ci_low=low, ci_high=high, n=n)
