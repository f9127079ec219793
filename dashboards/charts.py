"""Altair charts: a line per model with its 95% CI as a band."""
from __future__ import annotations

import altair as alt
import pandas as pd

# Okabe & Ito's palette: distinguishable with every common colour-vision deficiency (and in greyscale by order).
LENGTH_LABEL = "datum.value >= 1024 && datum.value % 1024 == 0 ? datum.value / 1024 + 'k' : datum.label"
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def spans_orders_of_magnitude(values: pd.Series, ratio: float = 20.0) -> bool:
    """True when the largest positive value is over `ratio` times the smallest: a linear axis would flatten all but
    the largest curve."""
    positive = values[values > 0]
    return not positive.empty and positive.max() / positive.min() > ratio


def curve(df: pd.DataFrame, x: str, y: str, color: str, *, x_title: str, y_title: str, log_x: bool = False,
          log_y: bool = False):
    """df: one row per point with columns x, y, color and optionally ci_low / ci_high; one colour-blind-safe colour
    per series (Okabe-Ito)."""
    scale = alt.Scale(type="log", base=2) if log_x else alt.Scale(zero=False)
    # a log length axis is labelled at the measured lengths, as 1k, 2k, ... like the tables
    axis = alt.Axis(values=sorted(df[x].unique().tolist()), labelExpr=LENGTH_LABEL) if log_x else alt.Axis()
    series = sorted(df[color].unique())
    colours = alt.Scale(domain=series, range=[PALETTE[i % len(PALETTE)] for i in range(len(series))])
    base = alt.Chart(df).encode(x=alt.X(f"{x}:Q", title=x_title, scale=scale, axis=axis),
                                color=alt.Color(f"{color}:N", scale=colours, legend=alt.Legend(orient="bottom",
                                                                                             columns=1, labelLimit=0)))
    layers = []
    if {"ci_low", "ci_high"} <= set(df.columns) and df[["ci_low", "ci_high"]].notna().any().all():
        band_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
        layers.append(base.mark_area(opacity=0.2).encode(y=alt.Y("ci_low:Q", title=y_title, scale=band_scale),
                                                          y2="ci_high:Q"))
    y_scale = alt.Scale(type="log") if log_y else alt.Scale(zero=False)
    layers.append(base.mark_line(point=True).encode(
        y=alt.Y(f"{y}:Q", title=y_title + (" (log scale)" if log_y else ""), scale=y_scale),
        tooltip=[c for c in (color, x, y, "ci_low", "ci_high", "n") if c in df.columns]))
    return alt.layer(*layers).properties(height=380)
