"""Perplexity vs context length: TTT vs baseline, one line per model, 95% CI bands (task ppl_vs_length)."""
from __future__ import annotations

import streamlit as st

from dashboards.charts import curve, spans_orders_of_magnitude
from dashboards.data import DEMO, bin_number, blank_missing, default_models, latest_metrics, no_runs
from evalsuite.plot import length_label

METRICS = ["ppl", "cum_ppl", "loss", "degradation_pct"]


def render(store) -> None:
    st.title("Perplexity vs context length")
    df = latest_metrics(store, "ppl_vs_length")
    if df.empty:
        no_runs("ppl_vs_length", f"Run\n\n    {DEMO}\n\nand `--model tiny-baseline` for the attention baseline.")
        return
    names = [m for m in METRICS if m in set(df["name"])]
    metric = st.selectbox("Metric", names, key="ppl_metric")
    models = sorted(df["model"].unique())
    chosen = st.multiselect("Models", models, default=default_models(df), key="ppl_models",
                            help="By default: the latest runs measured like the newest one (task version, corpus, "
                                 "lengths), so the curves compare")
    part = df[(df["name"] == metric) & df["model"].isin(chosen)]
    part = part.assign(length=[bin_number(b) for b in part["bin"]]).dropna(subset=["length"])
    part = part.assign(series=[f"{m} · n={d} · {c}" for m, d, c in zip(part["model"], part["docs"], part["corpus"])])
    log_y = st.checkbox("log y-axis", value=spans_orders_of_magnitude(part["value"]), key="ppl_log_y")
    st.altair_chart(curve(part, "length", "value", "series", x_title="context length (tokens)", y_title=metric,
                          log_x=True, log_y=log_y), width="stretch")
    st.caption("Latest finished run per model (content hash); n = documents; bands: 95% bootstrap CI over "
               "documents.")
    table = part.pivot_table(index=["model", "corpus", "docs"], columns="length", values="value")
    table.columns = [length_label(c) for c in table.columns]
    st.table(blank_missing(table.reset_index().rename(columns={"docs": "n"})), hide_index=True)
