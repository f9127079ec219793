"""The TTT monitor of a training run: fast-weight max-abs, inner loss before/after, eta, and the training loss,
from the run's `train_monitor` rows in the store (`evalsuite gate` stores RUN/monitor.csv for a checkpoint)."""
from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

# The carried-update token scale (the last position's 1/K plus its learnt offset) is the panel to watch: a run whose
# inner parameters learnt too fast drove it to 0 and switched off learning across mini-batches (docs/training.md).
PANELS = [("max |fast weight|", "_maxabs"), ("inner loss", "inner_loss_"), ("eta (lr gate)", "eta_"),
          ("carried-update token scale", "token_scale_last")]


def _split(bins: pd.Series) -> pd.DataFrame:
    parts = [dict(p.split("=", 1) for p in b.split("|")) for b in bins]
    return pd.DataFrame(parts, index=bins.index)


def render(store) -> None:
    st.title("TTT training monitor")
    runs = store.runs(task="train_monitor", status="finished")
    if runs.empty:
        st.info("No training monitors stored yet. `evalsuite gate --checkpoint RUN/final --stage N` stores "
                "RUN/monitor.csv with the checkpoint (or give --monitor PATH).")
        return
    labels = {f"run {r.id}: {r.model_spec} ({r.model_hash[:8]})": r.id for r in runs.iloc[::-1].itertuples()}
    run_id = int(labels[st.selectbox("Training run", list(labels), key="monitor_run")])
    summary = store.metrics(run_id=run_id)
    st.dataframe(summary[["name", "value", "n"]].set_index("name").T, width="stretch")
    samples = store.samples(run_id)
    mon = samples[samples["unit"] == "monitor"]
    if not mon.empty:
        mon = pd.concat([mon, _split(mon["bin"])], axis=1).assign(step=lambda d: d["step"].astype(int))
        mon["layer"] = mon["layer"].str.replace("model.layers.", "layer ").str.replace(".self_attn.ttt", "")
        cols = st.columns(len(PANELS))
        for col, (title, marker) in zip(cols, PANELS):
            part = mon[mon["name"].str.contains(marker, regex=False) & ~mon["name"].str.startswith("eta_std")]
            part = part.assign(series=part["layer"] + " " + part["name"])
            col.altair_chart(alt.Chart(part, title=title).mark_line().encode(
                x="step:Q", y=alt.Y("value:Q", title=title), color=alt.Color("series:N", legend=alt.Legend(
                    orient="bottom", columns=1))), width="stretch")
    log = samples[(samples["unit"] == "train_log") & (samples["name"] == "loss")]
    if not log.empty:
        log = log.assign(step=[int(b.split("=")[1]) for b in log["bin"]])
        st.subheader("Training loss")
        st.altair_chart(alt.Chart(log).mark_line().encode(x="step:Q", y=alt.Y("value:Q", title="loss")),
                        width="stretch")
