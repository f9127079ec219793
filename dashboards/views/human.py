"""Human evaluation: win rates with Wilson CIs, Bradley-Terry scores and rater agreement (task human_pref)."""
from __future__ import annotations

import streamlit as st

from dashboards.data import blank_missing


def render(store) -> None:
    st.title("Human evaluation")
    runs = store.runs(task="human_pref", status="finished")
    if runs.empty:
        st.info("No human-eval summaries yet: `evalsuite pairs export`, `evalsuite raters serve`, then "
                "`evalsuite pairs summarize` stores one (see the README's human-eval section).")
        return
    labels = {f"run {r.id}: {r.model_spec} ({r.finished_at:%Y-%m-%d %H:%M})": r.id
              for r in runs.iloc[::-1].itertuples()}
    run_id = labels[st.selectbox("Summary", list(labels), key="human_run")]
    rows = store.metrics(run_id=int(run_id))
    win = rows[rows["name"] == "win_rate"]
    st.subheader("Win rate of the first system (ties count half)")
    st.dataframe(win[["bin", "value", "ci_low", "ci_high", "n"]].rename(columns={"bin": "comparison"}),
                 hide_index=True, width="stretch")
    counts = rows[rows["name"].isin(["wins", "ties", "losses"])]
    if not counts.empty:
        st.dataframe(blank_missing(counts.pivot_table(index="bin", columns="name", values="value")), width="stretch")
    for name, title in (("bradley_terry", "Bradley-Terry scores"), ("cohen_kappa", "Agreement (Cohen's kappa)"),
                        ("krippendorff_alpha", "Agreement (Krippendorff's alpha)")):
        part = rows[rows["name"] == name]
        if not part.empty:
            st.subheader(title)
            st.dataframe(part[["bin", "value", "n"]], hide_index=True, width="stretch")
    raters = rows[rows["name"] == "rater_win_rate"]
    if not raters.empty:
        st.subheader("Per rater")
        st.dataframe(raters[["bin", "value", "ci_low", "ci_high", "n"]], hide_index=True, width="stretch")
