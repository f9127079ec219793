"""A training run's TTT monitor as store rows: a finished run of task `train_monitor` for the checkpoint.

The gate's monitor rules and the dashboard's monitor page read these rows; nothing reads the CSV files afterwards.

The monitor is evidence only for the weights it watched: the trainer records in RUN/weights.json, each time it
writes weights, their content hash with the step and the size and sha256 of monitor.csv and train_log.csv at that
moment. `ingest` stores the monitor for a checkpoint only when that record names the checkpoint's (verified) hash,
and only the part of the files written up to those weights, unchanged since; a monitor beside other or changed
weights is refused (MonitorMismatch).

Samples: unit "monitor" holds every number of RUN/monitor.csv (name = column, bin = "step=S|layer=L"); unit
"train_log" every number of RUN/train_log.csv (name = column, bin = "step=S").
Metric rows (bin ""): each `*_maxabs` column's maximum over steps and layers (NaN if any is NaN),
`nonfinite_values` (NaN/Inf cells in the monitor), `monitor_steps`, `last_step`, `inner_loss_ratio` (mean over
layers of inner_loss_after / inner_loss_before at the last monitored step; < 1: the inner models learn) and
`final_train_loss`.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .environment import code_version
from .errors import CorpusError, EvalsuiteError
from .store import Store

TASK = "train_monitor"
TASK_VERSION = "1"
WEIGHTS_RECORD = "weights.json"  # ttt_omni.train.trainer writes it beside monitor.csv


class MonitorMismatch(EvalsuiteError, ValueError):
    """A monitor that was not written for the checkpoint's weights (or was changed since)."""


def find_monitor_csv(checkpoint: str | Path) -> Path | None:
    """RUN/monitor.csv of the training run that wrote the checkpoint (RUN/final, RUN/checkpoints/NAME/model), found
    by the trainer's RUN/weights.json above it; None when there is none."""
    path = Path(str(checkpoint).split(":", 1)[-1]).expanduser().resolve()
    for parent in list(path.parents)[:3]:
        if (parent / WEIGHTS_RECORD).is_file() and (parent / "monitor.csv").is_file():
            return parent / "monitor.csv"
    return None


def _frame(data: bytes, path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(io.BytesIO(data))
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise CorpusError(f"monitor CSV {path}: not readable as CSV ({e})") from None
    need = {"step", "layer"} if path.name == "monitor.csv" else {"step"}
    if df.empty or not need <= set(df.columns):
        raise CorpusError(f"{path}: expected a header with {sorted(need)} and at least one row")
    return df


def bound_files(monitor_csv: Path, model_hash: str) -> tuple[dict, dict[str, bytes]]:
    """(the trainer's record of the weights with `model_hash`, {file name: its bytes up to those weights}); raises
    MonitorMismatch when the record is missing, names other weights, or the files changed since."""
    record_path = monitor_csv.with_name(WEIGHTS_RECORD)
    if not record_path.is_file():
        raise MonitorMismatch(f"monitor {monitor_csv}: no {WEIGHTS_RECORD} beside it, so nothing says which weights "
                              f"it watched; expected the record a training run writes with its checkpoints")
    try:
        saved = json.loads(record_path.read_text())["saved"]
        entry = next((e for e in saved if e["hash"] == model_hash), None)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise MonitorMismatch(f"{record_path}: not a readable weights record ({e})") from None
    if entry is None:
        known = ", ".join(f"{e.get('path')} {e.get('hash')}" for e in saved) or "none"
        raise MonitorMismatch(f"monitor {monitor_csv} was written for other weights (saved: {known}), not for "
                              f"checkpoint hash {model_hash}: the checkpoint was changed or comes from another run")
    files = {}
    for name, seal in entry.get("files", {}).items():
        file = monitor_csv.with_name(name)
        data = file.read_bytes()[: seal["bytes"]] if file.is_file() else b""
        if len(data) != seal["bytes"] or hashlib.sha256(data).hexdigest() != seal["sha256"]:
            raise MonitorMismatch(f"{file} was changed after the trainer saved "
                                  f"{entry['path']} (its first {seal['bytes']} bytes differ from what was recorded)")
        files[name] = data
    if "monitor.csv" not in files:
        raise MonitorMismatch(f"monitor {monitor_csv}: the trainer had written no monitor rows when it saved "
                              f"{entry['path']} (step {entry.get('step')})")
    return entry, files


def ingest(store: Store, monitor_csv: str | Path, *, model_id: str, model_hash: str, checkpoint: str) -> int:
    """Store the monitor (and train_log.csv beside it, if any) for the checkpoint whose verified content hash is
    `model_hash`; returns the run id. The same monitor already ingested for this checkpoint is not stored twice."""
    monitor_csv = Path(monitor_csv)
    if not monitor_csv.is_file():
        raise CorpusError(f"monitor CSV not found: {monitor_csv} (a training run writes RUN/monitor.csv)")
    entry, files = bound_files(monitor_csv, model_hash)
    digest = hashlib.sha256(b"".join(files[n] for n in sorted(files))).hexdigest()[:16]
    done = store.runs(task=TASK, model_hash=model_hash, status="finished")
    for run_id, config in zip(done["id"], done["config"]):
        if json.loads(config).get("content_sha256") == digest:
            return int(run_id)
    monitor = _frame(files["monitor.csv"], monitor_csv)
    log_csv = monitor_csv.with_name("train_log.csv")
    log = _frame(files["train_log.csv"], log_csv) if "train_log.csv" in files else None
    train_config = monitor_csv.with_name("config.json")
    config = {"monitor_csv": str(monitor_csv.resolve()), "content_sha256": digest, "weights": entry["path"],
              "step": entry.get("step"),
              "stage": json.loads(train_config.read_text()).get("stage") if train_config.is_file() else None}
    data = {"source": f"monitor:{monitor_csv.resolve()} up to step {entry.get('step')}", "documents": None,
            "hash": digest}
    run_id = store.start_run(task=TASK, task_version=TASK_VERSION, task_kind=TASK, model_id=model_id,
                             model_hash=model_hash, model_spec=str(checkpoint), config=config, seed=0,
                             n_units=1 + (log is not None), code_version=code_version(), data=data, resume=False)
    numeric = [c for c in monitor.columns if c not in ("step", "layer")]
    store.add_unit(run_id, "monitor", [
        dict(name=c, bin=f"step={int(r['step'])}|layer={r['layer']}", value=_num(r[c]))
        for _, r in monitor.iterrows() for c in numeric])
    if log is not None:
        store.add_unit(run_id, "train_log", [dict(name=c, bin=f"step={int(r['step'])}", value=_num(r[c]))
                                             for _, r in log.iterrows() for c in log.columns if c != "step"])
    store.finalize(run_id, lambda: summary_rows(monitor, log))
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
