"""Runs: every evaluation and training-monitor run, filtered by task, model and curriculum stage."""
from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from dashboards.data import DEMO, model_label, stages_by_hash


ENV_COLUMNS = ("transformers", "torch", "device", "dtype", "ttt_backend")  # the full environment is below the table


def render(store) -> None:
    st.title("Runs")
    runs = store.runs().iloc[::-1]  # newest first: the run just made is at the top
    if runs.empty:
        st.info(f"The results store holds no runs yet. Start with\n\n    {DEMO}")
        return
    stages = stages_by_hash(store)
    envs = [json.loads(e) if isinstance(e, str) else {} for e in runs["environment"]]  # NULL: older runs
    runs = runs.assign(model=[model_label(m, h) for m, h in zip(runs["model_id"], runs["model_hash"])],
                       stage=[", ".join(map(str, sorted(stages.get(h, ())))) for h in runs["model_hash"]],
                       **{field: [e.get(field) for e in envs] for field in ENV_COLUMNS})
    c1, c2, c3 = st.columns(3)
    tasks = c1.multiselect("Task", sorted(runs["task"].unique()), key="runs_task")
    models = c2.multiselect("Model", sorted(runs["model"].unique()), key="runs_model")
    stage_values = sorted({s for v in stages.values() for s in v})
    chosen = c3.multiselect("Curriculum stage", stage_values, key="runs_stage")
    if tasks:
        runs = runs[runs["task"].isin(tasks)]
    if models:
        runs = runs[runs["model"].isin(models)]
    if chosen:
        runs = runs[[bool(stages.get(h, set()) & set(chosen)) for h in runs["model_hash"]]]
    cols = ["id", "task", "task_version", "model", "stage", "status", "seed", "n_units", "code_version",
            *ENV_COLUMNS, "started_at", "finished_at", "error"]
    st.dataframe(runs[cols], hide_index=True, width="stretch")
    if runs.empty:
        return
    run_id = st.selectbox("Metric rows of run", list(runs["id"]), key="runs_detail")
    rows = store.metrics(run_id=int(run_id))
    st.dataframe(rows[["name", "bin", "value", "ci_low", "ci_high", "n"]], hide_index=True,
                 width="stretch")
    env = store.run(int(run_id))["environment"]
    st.caption(f"Environment of run {run_id}" + ("" if env else ": not recorded (stored by an older evalsuite)"))
    if env:
        st.dataframe(pd.DataFrame({"field": list(env), "value": [str(v) for v in env.values()]}),
                     hide_index=True)
