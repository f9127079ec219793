"""Long-context retrieval (passkey, niah, variable_tracking, book_facts): accuracy heatmaps of depth x context length,
one panel per model side by side (TTT vs baseline), n in every cell; accuracy by length; and the samples of a cell
(prompt excerpt, expected answer, the model's answer) to read failures."""
from __future__ import annotations

import json

import altair as alt
import pandas as pd
import streamlit as st

from dashboards.data import latest_metrics, no_runs
from evalsuite.metrics.retrieval import KINDS, METRICS, parse_cell

HINT = ("Run e.g. `evalsuite run --task passkey --model tiny --lengths 1k,2k,4k --limit 5`, and the same with "
        "`--model tiny-baseline`, to compare the TTT model with its attention baseline.")


def render(store) -> None:
    st.title("Long-context retrieval")
    runs = store.runs(status="finished")
    tasks = sorted(set(runs.loc[runs["task_kind"].isin(KINDS), "task"])) if not runs.empty else []
    if not tasks:
        no_runs("passkey", HINT)
        return
    task = st.selectbox("Task", tasks, key="retrieval_task")
    df = latest_metrics(store, task)
    metrics = [m for m in METRICS if m in set(df["name"])]
    metric = st.selectbox("Scoring", metrics, key="retrieval_metric",
                          format_func=lambda m: {"rank_accuracy": "rank (log-likelihood of the answer vs distractors)",
                                                 "generate_accuracy": "generate (greedy answer holds every value)"}[m])
    models = sorted(df["model"].unique())
    chosen = st.multiselect("Models", models, default=models, key="retrieval_models")
    part = df[(df["name"] == metric) & df["model"].isin(chosen)]
    cells = cell_frame(part)
    if cells.empty:
        st.info(f"No {metric} cells for the chosen models.")
        return
    chance = df[(df["name"] == "chance") & df["model"].isin(chosen)]["value"]
    st.altair_chart(heatmap(cells, chance.iloc[0] if metric == "rank_accuracy" and not chance.empty else None),
                    width="content")
    st.caption("Latest finished run per model (content hash). Each cell: accuracy over its n samples (Wilson 95% "
               "interval in the tooltip); depth = share of the haystack before the needle."
               + (f" Chance (rank) = {chance.iloc[0]:.2f}." if metric == "rank_accuracy" and not chance.empty else ""))
    by_length = part[part["bin"].str.fullmatch(r"length=\d+")]
    if not by_length.empty:
        st.subheader("By context length (all depths)")
        table = by_length.assign(length=by_length["bin"].str.slice(7).astype(int),
                                 cell=[_fmt(r) for r in by_length.itertuples()])
        st.dataframe(table.pivot_table(index="model", columns="length", values="cell", aggfunc="first"),
                     width="stretch")
    _by_distance(part, df[df["name"] == "attention_window"].set_index("model")["value"])
    _samples(store, part, cells)


def _by_distance(part: pd.DataFrame, windows: pd.Series) -> None:
    """Accuracy per needle distance bin, the bins at least the model's attention window back shaded."""
    rows = part[part["bin"].str.fullmatch(r"distance=\d+")]
    if rows.empty:
        return
    st.subheader("By needle distance (tokens between the needle and the question)")
    table = rows.assign(distance=rows["bin"].str.slice(9).astype(int), cell=[_fmt(r) for r in rows.itertuples()])
    grid = table.pivot_table(index="model", columns="distance", values="cell", aggfunc="first")

    def shade(row):
        window = windows.get(row.name)
        return ["background-color: #d9d9d9" if window is not None and d >= window else "" for d in row.index]

    st.dataframe(grid.style.apply(shade, axis=1), width="stretch")
    st.caption("Shaded: the needle lies at least the model's attention window back, out of every attention layer's "
               "reach; only a memory (TTT layers) can bring it back. A column holds the distances from its value up "
               "to the next one.")


def cell_frame(part: pd.DataFrame) -> pd.DataFrame:
    """The (length, depth) cells of metric rows: columns model, length, depth, value, ci_low, ci_high, n."""
    rows = part[part["bin"].str.contains(",depth=", regex=False)]
    if rows.empty:
        return pd.DataFrame(columns=["model", "length", "depth", "value", "ci_low", "ci_high", "n"])
    lengths, depths = zip(*(parse_cell(b) for b in rows["bin"]))
    return pd.DataFrame({"model": rows["model"].to_numpy(), "length": lengths, "depth": depths,
                         "value": rows["value"].to_numpy(), "ci_low": rows["ci_low"].to_numpy(),
                         "ci_high": rows["ci_high"].to_numpy(), "n": rows["n"].astype(int).to_numpy()})


def heatmap(cells: pd.DataFrame, chance: float | None = None):
    """Depth (rows, 0% at the top) x length (columns), colour = accuracy in [0, 1] (yellow at chance, when given),
    text = accuracy and n."""
    data = cells.assign(label=[f"{v:.2f}\nn={n}" for v, n in zip(cells["value"], cells["n"])])
    base = alt.Chart(data).encode(
        x=alt.X("length:O", title="context length (tokens)"),
        y=alt.Y("depth:O", title="needle depth (%)", sort="ascending"))
    rect = base.mark_rect().encode(
        color=alt.Color("value:Q", title="accuracy", scale=alt.Scale(domain=[0, 1], scheme="redyellowgreen",
                                                                      **({"domainMid": chance} if chance else {}))),
        tooltip=["model", "length", "depth", alt.Tooltip("value:Q", format=".2f"),
                 alt.Tooltip("ci_low:Q", format=".2f"), alt.Tooltip("ci_high:Q", format=".2f"), "n"])
    text = base.mark_text(fontSize=10, lineBreak="\n").encode(text="label:N")
    return alt.layer(rect, text, data=data).properties(width=70 * cells["length"].nunique() + 40,
                                                       height=24 * cells["depth"].nunique()).facet(
        column=alt.Column("model:N", title=None))


def _samples(store, part: pd.DataFrame, cells: pd.DataFrame) -> None:
    st.subheader("Samples of a cell")
    model = st.selectbox("Model", sorted(cells["model"].unique()), key="retrieval_sample_model")
    mine = cells[cells["model"] == model].sort_values(["length", "depth"])
    labels = [f"length={L},depth={d}" for L, d in zip(mine["length"], mine["depth"])]
    cell = st.selectbox("Cell", labels, key="retrieval_cell")
    run_id = int(part.loc[part["model"] == model, "run_id"].iloc[0])
    samples = store.samples(run_id)
    in_cell = samples["bin"].map(lambda b: b == cell or b.startswith(f"{cell},distance="))
    outputs = samples[(samples["name"] == "output") & in_cell]
    rows = []
    for unit, data in zip(outputs["unit"], outputs["data"]):
        d = json.loads(data or "{}")
        rows.append({"sample": unit, "answer": ", ".join(d.get("answers", [])), "output": d.get("text", ""),
                     "rank": _ok(d.get("rank_correct")), "generate": _ok(d.get("generate_correct")),
                     "depth": round(float(d.get("depth", float("nan"))), 3), "prompt": d.get("prompt", "")})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _ok(x) -> str:
    return "" if x is None else ("right" if x else "wrong")


def _fmt(r) -> str:
    return f"{r.value:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] n={int(r.n)}"
