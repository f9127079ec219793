"""Curves over a numeric bin (generation length, audio time) for any task's metric rows, read generically by task
name, metric name and bin: generation quality (degeneration, coherence, entity_drift, compare, ...) and ASR-WER."""
from __future__ import annotations

import streamlit as st

from dashboards.charts import curve, spans_orders_of_magnitude
from dashboards.data import NON_EVAL_TASKS, bin_number, blank_missing, default_models, latest_metrics, no_runs

ASR_TASK = "asr_wer"


def render_generation(store) -> None:
    st.title("Generation quality over generation length")
    runs = store.runs(status="finished")
    tasks = sorted(set(runs["task"]) - NON_EVAL_TASKS - {ASR_TASK}) if not runs.empty else []
    if not tasks:
        st.info("No finished generation-quality runs yet (tasks such as degeneration, coherence, entity_drift). "
                "Run e.g. `evalsuite run --task degeneration --model tiny --limit 2`.")
        return
    task = st.selectbox("Task", tasks, key="gen_task")
    _render_task(store, task, key="gen")


def render_asr(store) -> None:
    st.title("ASR-WER drift")
    st.caption("Word error rate of the speech reply against its text, over time in the conversation.")
    _render_task(store, ASR_TASK, key="asr")


def _render_task(store, task: str, key: str) -> None:
    df = latest_metrics(store, task)
    if df.empty:
        no_runs(task, f"Run `evalsuite run --task {task} --model ...`.")
        return
    df = df.assign(x=[bin_number(b) for b in df["bin"]])
    binned = df.dropna(subset=["x"])
    models = sorted(df["model"].unique())
    chosen = st.multiselect("Models", models, default=default_models(df), key=f"{key}_models")
    if not binned.empty:
        metric = st.selectbox("Metric", sorted(binned["name"].unique()), key=f"{key}_metric")
        part = binned[(binned["name"] == metric) & binned["model"].isin(chosen)]
        part = part.assign(series=[f"{m} · n={d} · {c}" for m, d, c in zip(part["model"], part["docs"],
                                                                           part["corpus"])])
        axis = binned["bin"].iloc[0].split("=")[0]
        st.altair_chart(curve(part, "x", "value", "series", x_title=axis, y_title=metric,
                              log_y=spans_orders_of_magnitude(part["value"])), width="stretch")
    scalars = df[df["x"].isna() & df["model"].isin(chosen)]
    if not scalars.empty:
        st.subheader("Whole-run values")
        st.dataframe(blank_missing(scalars.pivot_table(index=["model", "docs"], columns=["name", "bin"],
                                                       values="value")), width="stretch")
