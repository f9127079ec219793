"""What the pages share: the store's URL, opening it, labels, and the store's rows shaped for plotting."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import streamlit as st
from sqlalchemy.engine import make_url

from evalsuite import gate_db
from evalsuite.database import redact
from evalsuite.store import Store

DEMO = ".venv/bin/evalsuite run --task ppl_vs_length          # the README's demo: tiny model, bundled books"
NON_EVAL_TASKS = {"ppl_vs_length", "human_pref", "train_monitor"}


def missing_store(url: str) -> str | None:
    """A helpful message when the store does not exist yet (the dashboard never creates it)."""
    try:
        parsed = make_url(url)
    except Exception as e:  # noqa: BLE001  (any malformed URL: say which and why)
        return f"The results store URL {redact(url)!r} is not a valid SQLAlchemy URL ({e}). Set EVALSUITE_DB or --db."
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not Path(parsed.database).is_file():
        return (f"No results yet: there is no results store at {parsed.database}.\n\nRun an evaluation first, e.g.\n\n"
                f"    {DEMO}\n\nthen reload this page. Another store: `evalsuite dashboard --db URL` "
                "(or set EVALSUITE_DB).")
    return None


@st.cache_resource
def open_store(url: str) -> Store:
    return Store(url)


def no_runs(task: str, hint: str) -> None:
    st.info(f"No finished runs of task `{task}` in the store yet. {hint}")


def model_label(model_id: str, model_hash: str) -> str:
    return f"{model_id} ({model_hash[:8]})"


def latest_metrics(store: Store, task: str) -> pd.DataFrame:
    """Metric rows of the latest finished run of `task` per model hash, with a `model` label column."""
    df = store.metrics(task=task, finished_only=True)
    if df.empty:
        return df
    df = df[df["run_id"] == df.groupby("model_hash")["run_id"].transform("max")]
    return df.assign(model=[model_label(m, h) for m, h in zip(df["model_id"], df["model_hash"])])


def bin_number(b: str) -> float | None:
    """The number of a bin such as "length=8192" (None for "" or a non-numeric bin)."""
    m = re.fullmatch(r"[A-Za-z_]+=(-?\d+(?:\.\d+)?)", b or "")
    return float(m.group(1)) if m else None


def stages_by_hash(store: Store) -> dict[str, set[int]]:
    """Curriculum stage(s) of each checkpoint: from its training-monitor run and its gate decisions."""
    out: dict[str, set[int]] = {}
    for h, config in zip(*[store.runs(task="train_monitor")[c] for c in ("model_hash", "config")]):
        stage = json.loads(config).get("stage")
        if stage is not None:
            out.setdefault(h, set()).add(int(stage))
    hist = gate_db.history(store)
    for h, stage in zip(hist["model_hash"], hist["stage"]):
        out.setdefault(h, set()).add(int(stage))
    return out
