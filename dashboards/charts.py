"""Altair charts: a line per model with its 95% CI as a band."""
from __future__ import annotations

import altair as alt
import pandas as pd


def curve(df: pd.DataFrame, x: str, y: str, color: str, *, x_title: str, y_title: str, log_x: bool = False):
    """df: one row per point with columns x, y, color and optionally ci_low / ci_high."""
    scale = alt.Scale(type="log", base=2) if log_x else alt.Scale(zero=False)
    base = alt.Chart(df).encode(x=alt.X(f"{x}:Q", title=x_title, scale=scale), color=alt.Color(f"{color}:N"))
    layers = []
    if {"ci_low", "ci_high"} <= set(df.columns) and df[["ci_low", "ci_high"]].notna().any().all():
        layers.append(base.mark_area(opacity=0.2).encode(y=alt.Y("ci_low:Q", title=y_title), y2="ci_high:Q"))
    layers.append(base.mark_line(point=True).encode(
        y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False)),
        tooltip=[c for c in (color, x, y, "ci_low", "ci_high", "n") if c in df.columns]))
    return alt.layer(*layers).properties(height=380)
