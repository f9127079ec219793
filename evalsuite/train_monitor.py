"""A training run's TTT monitor as store rows: a finished run of task `train_monitor` for the checkpoint.

The gate's monitor rules and the dashboard's monitor page read these rows; nothing reads the CSV files afterwards.

Samples: unit "monitor" holds every number of RUN/monitor.csv (name = column, bin = "step=S|layer=L"); unit
"train_log" every number of RUN/train_log.csv (name = column, bin = "step=S").
Metric rows (bin ""): each `*_maxabs` column's maximum over steps and layers (NaN if any is NaN),
`nonfinite_values` (NaN/Inf cells in the monitor), `monitor_steps`, `last_step`, `inner_loss_ratio` (mean over
layers of inner_loss_after / inner_loss_before at the last monitored step; < 1: the inner models learn) and
`final_train_loss`.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import CorpusError
from .environment import code_version
from .store import Store

TASK = "train_monitor"
TASK_VERSION = "1"


def find_monitor_csv(checkpoint: str | Path) -> Path | None:
    """RUN/monitor.csv for a checkpoint at RUN/final or RUN/checkpoints/NAME, if it exists."""
    path = Path(str(checkpoint).split(":", 1)[-1]).expanduser().resolve()
    for parent in (path.parent, path.parent.parent):
        if (parent / "monitor.csv").is_file():
            return parent / "monitor.csv"
    return None


def _read(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise CorpusError(f"monitor CSV {path}: not readable as CSV ({e})") from None
    need = {"step", "layer"} if path.name == "monitor.csv" else {"step"}
    if df.empty or not need <= set(df.columns):
        raise CorpusError(f"{path}: expected a header with {sorted(need)} and at least one row")
    return df


def ingest(store: Store, monitor_csv: str | Path, *, model_id: str, model_hash: str, checkpoint: str) -> int:
    """Store the monitor (and train_log.csv beside it, if any) for the checkpoint; returns the run id. A file
    already ingested for this checkpoint (same content) is not stored twice."""
    monitor_csv = Path(monitor_csv)
    if not monitor_csv.is_file():
        raise CorpusError(f"monitor CSV not found: {monitor_csv} (a training run writes RUN/monitor.csv)")
    log_csv = monitor_csv.with_name("train_log.csv")
    digest = hashlib.sha256(monitor_csv.read_bytes()
                            + (log_csv.read_bytes() if log_csv.is_file() else b"")).hexdigest()[:16]
    done = store.runs(task=TASK, model_hash=model_hash, status="finished")
    for run_id, config in zip(done["id"], done["config"]):
        if json.loads(config).get("content_sha256") == digest:
            return int(run_id)
    monitor = _read(monitor_csv)
    log = _read(log_csv) if log_csv.is_file() else None
    train_config = monitor_csv.with_name("config.json")
    config = {"monitor_csv": str(monitor_csv.resolve()), "content_sha256": digest,
              "stage": json.loads(train_config.read_text()).get("stage") if train_config.is_file() else None}
    run_id = store.start_run(task=TASK, task_version=TASK_VERSION, task_kind=TASK, model_id=model_id,
                             model_hash=model_hash, model_spec=str(checkpoint), config=config, seed=0,
                             n_units=1 + (log is not None), code_version=code_version(), resume=False)
    numeric = [c for c in monitor.columns if c not in ("step", "layer")]
    store.add_unit(run_id, "monitor", [
        dict(name=c, bin=f"step={int(r['step'])}|layer={r['layer']}", value=_num(r[c]))
        for _, r in monitor.iterrows() for c in numeric])
    if log is not None:
        store.add_unit(run_id, "train_log", [dict(name=c, bin=f"step={int(r['step'])}", value=_num(r[c]))
                                             for _, r in log.iterrows() for c in log.columns if c != "step"])
    store.complete_run(run_id, summary_rows(monitor, log))
    return run_id


def summary_rows(monitor: pd.DataFrame, log: pd.DataFrame | None) -> list[dict]:
    n = len(monitor)
    values = monitor.drop(columns=["step", "layer"]).apply(pd.to_numeric, errors="coerce").to_numpy(float)
    rows = [dict(name=c, value=float(monitor[c].max(skipna=False)), n=n)
            for c in monitor.columns if c.endswith("_maxabs")]
    rows.append(dict(name="nonfinite_values", value=float((~np.isfinite(values)).sum()), n=n))
    rows.append(dict(name="monitor_steps", value=float(monitor["step"].nunique()), n=n))
    rows.append(dict(name="last_step", value=float(monitor["step"].max()), n=n))
    if {"inner_loss_before", "inner_loss_after"} <= set(monitor.columns):
        last = monitor[monitor["step"] == monitor["step"].max()]
        ratio = (last["inner_loss_after"] / last["inner_loss_before"]).mean()
        rows.append(dict(name="inner_loss_ratio", value=float(ratio), n=len(last)))
    if log is not None and "loss" in log.columns:
        rows.append(dict(name="final_train_loss", value=float(log["loss"].iloc[-1]), n=len(log)))
    return rows


def _num(x) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan
