"""Sweeps: a study run by `ttt-omni sweep` (its Optuna tables live in the results store's database): the objective
of each trial, each searched field against the objective, the settings ranked with their 95% t intervals over
seeds, and the best against the default paired by seed (evalsuite.sweep.report computes all of it)."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards.charts import PALETTE

STATE_COLOURS = alt.Scale(domain=["complete", "pruned", "fail"], range=[PALETTE[0], PALETTE[1], PALETTE[3]])


def render(store) -> None:
    st.title("Sweeps")
    try:
        from evalsuite.sweep.report import best_vs_default, settings_table, t_interval, trial_rows
        from evalsuite.sweep.study import load_study, study_names
    except ModuleNotFoundError as e:
        st.info(f"Sweeps need Optuna ({e.name} is not installed): pip install 'ttt-omni[sweep]'")
        return
    names = study_names(store.url)
    if not names:
        st.info("No sweeps in this results store yet. Run one, e.g.\n\n    .venv/bin/ttt-omni sweep "
                "ablation-ttt-type\n\nthen reload this page.")
        return
    name = st.selectbox("Study", names[::-1], key="sweep_study")  # the newest first
    study, spec = load_study(name, store.url)
    rows = trial_rows(study, spec)
    metric = spec.objective.metric + (f" @ {spec.objective.bin}" if spec.objective.bin else "")
    st.caption(f"{spec.objective.task}: {metric}, {spec.objective.direction}d · sampler {spec.sampler} · "
               f"{len(rows)} of {spec.n_trials()} trials settled · seeds {spec.seeds} · training config "
               f"{spec.train} with {spec.set}")
    if rows.empty:
        st.info("No trial of this study has finished yet.")
        return
    table = settings_table(rows, spec)
    st.subheader("Settings, best first (mean and 95% t interval over seeds)")
    st.dataframe(table, hide_index=True, width="stretch")
    comparison = best_vs_default(rows, spec)
    st.subheader("Best against the default (paired by seed)")
    if comparison is None:
        st.info("No comparison: the spec names no complete default setting, or it has no complete trial.")
    elif comparison.decidable:
        (st.success if comparison.verdict == "best is better" else st.info)(comparison.sentence(metric))
    else:
        st.warning(comparison.sentence(metric))
    st.subheader("Objective of each trial")
    st.altair_chart(alt.Chart(rows).mark_point(filled=True, size=70).encode(
        x=alt.X("trial:Q", title="trial"), y=alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)),
        color=alt.Color("state:N", scale=STATE_COLOURS), shape="state:N",
        tooltip=["trial", "state", "setting", "seed", "value", "eval_run_id"]).properties(height=300),
        width="stretch")
    st.subheader("Each searched field against the objective")
    done = rows[rows["state"] == "complete"]
    for field in spec.space:
        label = field.removeprefix("model_overrides.")
        data = done.assign(**{label: done[field].map(str)})
        points = alt.Chart(data).mark_point(filled=True, opacity=0.6).encode(
            x=alt.X(f"{label}:N", title=label), y=alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)),
            tooltip=["trial", "seed", "value"])
        summary = pd.DataFrame([{label: v, **dict(zip(("mean", "low", "high"), t_interval(g["value"])))}
                                for v, g in data.groupby(label)])
        bars = alt.Chart(summary).mark_errorbar(ticks=True).encode(x=f"{label}:N", y="low:Q", y2="high:Q")
        means = alt.Chart(summary).mark_tick(color="black", thickness=2).encode(x=f"{label}:N", y="mean:Q",
                                                                               tooltip=["mean", "low", "high"])
        st.altair_chart((points + bars + means).properties(height=260, title=label), width="stretch")
    st.caption("Dots: one seed each; black tick and bar: the mean and its 95% t interval over seeds. Each trial is "
               "an ordinary run in the store: the Runs page shows its evaluation (eval_run_id).")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
