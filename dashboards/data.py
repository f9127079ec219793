"""What the pages share: the store's URL, opening it, labels, and the store's rows shaped for plotting."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import streamlit as st
from sqlalchemy.engine import make_url

from evalsuite import gate_db
from evalsuite.database import mask_passwords, redact
from evalsuite.store import Store

DEMO = ".venv/bin/evalsuite run --task ppl_vs_length          # the README's demo: tiny model, bundled books"
NON_EVAL_TASKS = {"ppl_vs_length", "human_pref", "train_monitor"}


def missing_store(url: str) -> str | None:
    """A helpful message when the store does not exist yet (the dashboard never creates it)."""
    try:
        parsed = make_url(url)
    except Exception as e:  # noqa: BLE001  (any malformed URL: say which and why)
        return (f"The results store URL {redact(url)!r} is not a valid SQLAlchemy URL ({mask_passwords(str(e))}). Set "
                "EVALSUITE_DB or --db.")
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


def corpus_label(config: dict) -> str:
    """What a run was measured on: a user corpus's file name, or the bundled books' split."""
    if config.get("corpus"):
        return Path(config["corpus"]).name
    dataset = config.get("dataset") or {}
    return dataset.get("path") and Path(dataset["path"]).name or f"books:{dataset.get('split', 'eval')}"


def latest_metrics(store: Store, task: str) -> pd.DataFrame:
    """Metric rows of the latest finished run of `task` per model hash, with columns `model` (label), `corpus`,
    `docs` (units of the run), `group` (task version + corpus + lengths: runs that belong on one chart)."""
    df = store.metrics(task=task, finished_only=True)
    if df.empty:
        return df
    df = df[df["run_id"] == df.groupby("model_hash")["run_id"].transform("max")]
    runs = store.runs(task=task, status="finished").set_index("id")
    config = {i: json.loads(runs.loc[i, "config"]) for i in df["run_id"].unique()}
    corpus = {i: corpus_label(c) for i, c in config.items()}
    group = {i: (runs.loc[i, "task_version"], corpus[i], str(c.get("lengths"))) for i, c in config.items()}
    return df.assign(model=[model_label(m, h) for m, h in zip(df["model_id"], df["model_hash"])],
                     corpus=df["run_id"].map(corpus), docs=df["run_id"].map(runs["n_units"]),
                     group=df["run_id"].map(group))


def default_models(df: pd.DataFrame) -> list[str]:
    """The models whose latest runs belong with the newest one (same task version, corpus and lengths)."""
    newest = df.loc[df["run_id"].idxmax(), "group"]
    return sorted(df.loc[df["group"] == newest, "model"].unique())


def blank_missing(table: pd.DataFrame) -> pd.DataFrame:
    """Missing cells shown empty rather than as "None"."""
    return table.astype(object).where(table.notna(), "")


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
