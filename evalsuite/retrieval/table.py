"""A markdown table of retrieval runs: accuracy per context length and overall (with its Wilson 95% interval), the
chance level and how long each run took (the store's start and finish times), one row per run."""
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
