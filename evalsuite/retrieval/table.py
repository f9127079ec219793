"""Markdown tables of retrieval runs, one row per run: accuracy per context length and overall (with its Wilson 95%
interval), the chance level and how long each run took (the store's start and finish times); or accuracy per needle
distance, the distances beyond the run's attention window marked with a footnote."""
from __future__ import annotations

import pandas as pd

from ..errors import EvalsuiteError
from ..metrics.retrieval import KINDS


def retrieval_runs(store) -> list[int]:
    """The latest finished run of every retrieval task per model, ordered by task kind, task and model id."""
    runs = store.runs(status="finished")
    runs = runs[runs["task_kind"].isin(KINDS)]
    if runs.empty:
        raise EvalsuiteError(f"no finished run of a retrieval task ({', '.join(KINDS)}) in the results store")
    latest = runs.sort_values("id").groupby(["task", "model_hash"]).tail(1)
    latest = latest.assign(order=latest["task_kind"].map(KINDS.index)).sort_values(["order", "task", "model_id"])
    return [int(i) for i in latest["id"]]


def markdown_table(store, run_ids: list[int], metric: str = "rank_accuracy") -> str:
    """One row per run: task, model, `metric` at each length (blank where a run has none), overall [95% CI], n,
    chance (rank accuracy only) and the run's wall time."""
    rows, lengths = [], set()
    for run_id in run_ids:
        run = store.run(run_id)
        m = store.metrics(run_id=run_id, name=metric)
        if m.empty or "" not in set(m["bin"]):
            raise EvalsuiteError(f"run {run_id} ({run['task']}, {run['model_id']}) has no {metric!r} rows; expected "
                                 f"a finished run of a retrieval task ({', '.join(KINDS)})")
        by_bin = m.set_index("bin")
        per_length = {int(b.removeprefix("length=")): v for b, v in by_bin["value"].items()
                      if b.startswith("length=") and ",depth=" not in b}
        lengths |= set(per_length)
        chance = store.metrics(run_id=run_id, name="chance") if metric == "rank_accuracy" else pd.DataFrame()
        seconds = (pd.Timestamp(run["finished_at"]) - pd.Timestamp(run["started_at"])).total_seconds()
        rows.append((run, per_length, by_bin.loc[""], chance["value"].iloc[0] if not chance.empty else None, seconds))
    lengths = sorted(lengths)
    head = ["task", "model", *map(_k, lengths), "all [95% CI]", "n", "chance", "time"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for run, per_length, overall, chance, seconds in rows:
        cells = [f"{per_length[L]:.2f}" if L in per_length else "" for L in lengths]
        lines.append("| " + " | ".join([run["task"], run["model_id"], *cells,
                                        f"{overall['value']:.2f} [{overall['ci_low']:.2f}, {overall['ci_high']:.2f}]",
                                        str(int(overall["n"])), "" if chance is None else f"{chance:.2f}",
                                        _duration(seconds)]) + " |")
    return "\n".join(lines)


def _k(length: int) -> str:
    return f"{length // 1024}k" if length % 1024 == 0 else str(length)


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes else f"{s} s"


BEYOND = "†"


def distance_table(store, run_ids: list[int], metric: str = "rank_accuracy") -> str:
    """One row per run: task, model, `metric` [95% CI] (n) at each needle distance ("distance=N" rows), marked
    BEYOND where the distance is at least the run's attention window (its `attention_window` row); a footnote says
    what the mark means."""
    rows, distances, marked = [], set(), False
    for run_id in run_ids:
        run = store.run(run_id)
        m = store.metrics(run_id=run_id, name=metric)
        by_distance = {int(b.removeprefix("distance=")): r for b, r in m.set_index("bin").iterrows()
                       if b.startswith("distance=")}
        if not by_distance:
            raise EvalsuiteError(f"run {run_id} ({run['task']}, {run['model_id']}) has no {metric!r} rows by needle "
                                 "distance; expected a retrieval run of this version of the suite")
        window = store.metrics(run_id=run_id, name="attention_window")
        window = int(window["value"].iloc[0]) if not window.empty else None
        distances |= set(by_distance)
        rows.append((run, by_distance, window))
    distances = sorted(distances)
    head = ["task", "model", "window", *(f"{_k(d)}" for d in distances)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for run, by_distance, window in rows:
        cells = []
        for d in distances:
            if d not in by_distance:
                cells.append("")
                continue
            r = by_distance[d]
            beyond = window is not None and d >= window
            marked |= beyond
            cells.append(f"{r['value']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] n={int(r['n'])}"
                         + (f" {BEYOND}" if beyond else ""))
        lines.append("| " + " | ".join([run["task"], run["model_id"], "full" if window is None else str(window),
                                        *cells]) + " |")
    if marked:
        lines.append("")
        lines.append(f"{BEYOND} the needle lies at least the model's attention window before the question: no "
                     "attention layer sees it, only a memory (TTT layers) can bring it back. Columns: tokens between "
                     "the needle and the question, at least this many (the bin's lower edge).")
    return "\n".join(lines)
