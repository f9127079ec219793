"""Perplexity vs context length: TTT vs baseline, one line per model, 95% CI bands (task ppl_vs_length)."""
from __future__ import annotations

import streamlit as st

from dashboards.charts import curve
from dashboards.data import DEMO, bin_number, latest_metrics, no_runs

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
    chosen = st.multiselect("Models", models, default=models, key="ppl_models")
    part = df[(df["name"] == metric) & df["model"].isin(chosen)]
    part = part.assign(length=[bin_number(b) for b in part["bin"]]).dropna(subset=["length"])
    st.altair_chart(curve(part, "length", "value", "model", x_title="context length (tokens)", y_title=metric,
                          log_x=True), width="stretch")
    st.caption("Latest finished run per model (content hash); bands: 95% bootstrap CI over documents.")
    table = part.pivot_table(index="model", columns="length", values="value")
    table.columns = [f"{int(c)}" for c in table.columns]
    st.dataframe(table, width="stretch")
