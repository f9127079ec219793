"""Results store: every evaluation result lives here (SQLAlchemy; a SQLite file by default, any SQL URL).

Tables
  runs     one evaluation of one task on one model: task, task_version, task_kind, model_id, model_hash, model_spec,
           config (JSON), config_hash, code_version, environment (JSON: libraries, device, numerics, code hash; see
           evalsuite.environment), seed, host, n_units, status (running | finalizing | finished | failed), error,
           started_at, finished_at. `resume_key` (unique while the run is unfinished, NULL after) lets an
           interrupted or sharded run be picked up by the next process with the same identity, environment included.
  units    the finished units of work of a run (e.g. one document): run_id, key, shard, host, finished_at.
  samples  per-unit measurements: run_id, unit, name, bin, value, n, data (JSON).
  metrics  the results: run_id, task, task_version, model_id, model_hash, name, bin (e.g. "length=8192", "" for
           none), value, ci_low, ci_high, n. Task and model are repeated here so that a query such as "degradation_pct
           at length=8192 for model hash X" needs no join.
Other parts keep their tables on `METADATA` too (the gate's decisions, evalsuite.gate_db); `Store()` creates missing
tables and adds columns that a store written by an older version lacks (all such columns are nullable). The
database itself (URL, engine, SQLite's WAL and BEGIN IMMEDIATE) is evalsuite.database's.

API: `Store(url)`, `start_run(...)`, `done_units(run_id)`, `add_unit(run_id, key, samples)`, `samples(run_id)`,
`claim_finalize(run_id)`, `complete_run(run_id, rows)` (metrics + finished, atomically), `add_metrics(run_id, rows)`,
`finish_run(run_id, status)`, `run(run_id)`, `runs(...)`, `metrics(...)` (plain dicts / pandas DataFrames), and for
other tables on METADATA `transaction(fn)` (a retried write) and `frame(query)`.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import (Column, DateTime, Float, ForeignKey, Integer, MetaData, String, Table, Text, UniqueConstraint,
                        func, insert, select, update)
from sqlalchemy.exc import IntegrityError, OperationalError

from .database import create_tables, database_url, make_engine, retry
from .errors import StoreError

METADATA = MetaData()

runs_table = Table(
    "runs", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task", String(200), nullable=False, index=True),
    Column("task_version", String(50), nullable=False),
    Column("task_kind", String(100), nullable=False),
    Column("model_id", String(300), nullable=False, index=True),
    Column("model_hash", String(64), nullable=False, index=True),
    Column("model_spec", Text, nullable=False),
    Column("config", Text, nullable=False),
    Column("config_hash", String(64), nullable=False),
    Column("code_version", String(100), nullable=False),
    Column("environment", Text),  # NULL for runs stored before environments were recorded
    Column("seed", Integer, nullable=False),
    Column("host", String(200), nullable=False),
    Column("n_units", Integer, nullable=False),
    Column("status", String(20), nullable=False, index=True),
    Column("error", Text),
    Column("resume_key", String(64), unique=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

units_table = Table(
    "units", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False, index=True),
    Column("key", String(500), nullable=False),
    Column("shard", Integer, nullable=False),
    Column("host", String(200), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("run_id", "key", name="uq_units_run_key"),
)

samples_table = Table(
    "samples", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False, index=True),
    Column("unit", String(500), nullable=False),
    Column("name", String(100), nullable=False),
    Column("bin", String(100), nullable=False, default=""),
    Column("value", Float),
    Column("n", Integer),
    Column("data", Text),
)

metrics_table = Table(
    "metrics", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False, index=True),
    Column("task", String(200), nullable=False, index=True),
    Column("task_version", String(50), nullable=False),
    Column("model_id", String(300), nullable=False),
    Column("model_hash", String(64), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("bin", String(100), nullable=False, default=""),
    Column("value", Float),
    Column("ci_low", Float),
    Column("ci_high", Float),
    Column("n", Integer),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Store:
    """A results database. `url` is any SQLAlchemy URL or a plain file path (taken as SQLite); None = $EVALSUITE_DB
    or results/evalsuite.db."""

    def __init__(self, url: str | os.PathLike | None = None):
        self.url = database_url(url)
        self.engine = make_engine(self.url)
        try:
            create_tables(self.engine, METADATA)
        except OperationalError as e:
            raise StoreError(f"cannot open results store {self.url!r}: {e.orig}") from None

    def transaction(self, fn):
        """Runs `fn()` (which opens its own `engine.begin()` block), retried while the database is locked."""
        return retry(fn)

    def frame(self, query) -> pd.DataFrame:
        """The rows of a SELECT as a DataFrame."""
        with self.engine.connect() as c:
            res = c.execute(query)
            return pd.DataFrame(res.fetchall(), columns=list(res.keys()))

    # --- runs ---------------------------------------------------------------------------------------------------

    def start_run(self, *, task: str, task_version: str, task_kind: str, model_id: str, model_hash: str,
                  model_spec: str, config: dict, seed: int, n_units: int, code_version: str,
                  environment: dict | None = None, host: str | None = None, resume: bool = True) -> int:
        """Create a run, or with `resume` return the unfinished run with the same identity (task, version, model
        hash, config, seed, environment) so that its finished units are kept. Safe against several processes at
        once."""
        chash = config_hash(config)
        key = config_hash([task, task_version, model_hash, chash, seed, environment])
        row = dict(task=task, task_version=task_version, task_kind=task_kind, model_id=model_id,
                   model_hash=model_hash, model_spec=model_spec, config=json.dumps(config, sort_keys=True, default=str),
                   config_hash=chash, code_version=code_version, seed=seed, host=host or socket.gethostname(),
                   environment=None if environment is None else json.dumps(environment, sort_keys=True),
                   n_units=n_units, status="running", started_at=_now())

        def txn():
            with self.engine.begin() as c:
                existing = c.execute(select(runs_table.c.id).where(runs_table.c.resume_key == key)).scalar()
                if existing is not None and resume:
                    # failed, or killed while finalizing: its units are kept, the aggregation is redone
                    c.execute(update(runs_table).where(runs_table.c.id == existing)
                              .where(runs_table.c.status.in_(("failed", "finalizing")))
                              .values(status="running", error=None))
                    return existing
                if existing is not None:  # a fresh run was asked for: the old one stays, unfinished, unresumable
                    c.execute(update(runs_table).where(runs_table.c.id == existing).values(resume_key=None))
                return c.execute(insert(runs_table).values(**row, resume_key=key)).inserted_primary_key[0]

        for _ in range(5):
            try:
                return self.transaction(txn)
            except IntegrityError:  # another process created it between our select and insert (non-SQLite)
                continue
        raise StoreError(f"could not create or resume a run of {task} in {self.url}")

    def finish_run(self, run_id: int, status: str = "finished", error: str | None = None) -> None:
        """Mark a run finished (it can no longer be resumed) or failed (the next identical run resumes it)."""
        values = dict(status=status, error=error, finished_at=_now())
        if status == "finished":
            values["resume_key"] = None
        self._write(update(runs_table).where(runs_table.c.id == run_id).values(**values))

    def claim_finalize(self, run_id: int) -> bool:
        """True for exactly one caller once every unit of the run is done: that caller writes the metrics."""
        def txn():
            with self.engine.begin() as c:
                n_units = c.execute(select(runs_table.c.n_units).where(runs_table.c.id == run_id)).scalar()
                done = c.execute(select(func.count()).select_from(units_table)
                                 .where(units_table.c.run_id == run_id)).scalar()
                if n_units is None or done < n_units:
                    return False
                res = c.execute(update(runs_table).where(runs_table.c.id == run_id)
                                .where(runs_table.c.status.in_(("running", "failed"))).values(status="finalizing"))
                return res.rowcount == 1
        return self.transaction(txn)

    def complete_run(self, run_id: int, rows: list[dict]) -> None:
        """Write the metric rows and mark the run finished, in one transaction (all or nothing)."""
        full = self._metric_rows(run_id, rows)

        def txn():
            with self.engine.begin() as c:
                if full:
                    c.execute(insert(metrics_table), full)
                c.execute(update(runs_table).where(runs_table.c.id == run_id)
                          .values(status="finished", error=None, finished_at=_now(), resume_key=None))
        self.transaction(txn)

    def run(self, run_id: int) -> dict:
        with self.engine.connect() as c:
            row = c.execute(select(runs_table).where(runs_table.c.id == run_id)).mappings().first()
        if row is None:
            raise StoreError(f"no run {run_id} in {self.url}")
        out = dict(row)
        out["config"] = json.loads(out["config"])
        out["environment"] = json.loads(out["environment"]) if out["environment"] else None
        return out

    def unfinished_runs(self, *, task: str, task_version: str, model_hash: str, config: dict, seed: int) -> list[dict]:
        """Resumable runs of this task, model, config and seed, whatever their environment (oldest first)."""
        q = (select(runs_table.c.id).where(runs_table.c.resume_key.is_not(None))
             .where(runs_table.c.task == task).where(runs_table.c.task_version == task_version)
             .where(runs_table.c.model_hash == model_hash).where(runs_table.c.config_hash == config_hash(config))
             .where(runs_table.c.seed == seed).order_by(runs_table.c.id))
        with self.engine.connect() as c:
            ids = list(c.execute(q).scalars())
        return [self.run(i) for i in ids]

    def runs(self, *, task: str | None = None, model_hash: str | None = None, status: str | None = None
             ) -> pd.DataFrame:
        q = select(runs_table).order_by(runs_table.c.id)
        for col, val in (("task", task), ("model_hash", model_hash), ("status", status)):
            if val is not None:
                q = q.where(runs_table.c[col] == val)
        return self.frame(q)

    # --- units and samples --------------------------------------------------------------------------------------

    def done_units(self, run_id: int) -> set[str]:
        with self.engine.connect() as c:
            return set(c.execute(select(units_table.c.key).where(units_table.c.run_id == run_id)).scalars())

    def add_unit(self, run_id: int, key: str, samples: list[dict], shard: int = 0) -> bool:
        """Store a finished unit and its sample rows in one transaction; False if another process stored it first."""
        rows = [dict(run_id=run_id, unit=key, name=s["name"], bin=s.get("bin", ""), value=s.get("value"),
                     n=s.get("n"), data=json.dumps(s["data"]) if s.get("data") is not None else None)
                for s in samples]

        def txn():
            with self.engine.begin() as c:
                c.execute(insert(units_table).values(run_id=run_id, key=key, shard=shard, host=socket.gethostname(),
                                                     finished_at=_now()))
                if rows:
                    c.execute(insert(samples_table), rows)
            return True
        try:
            return self.transaction(txn)
        except IntegrityError:
            return False

    def samples(self, run_id: int) -> pd.DataFrame:
        return self.frame(select(samples_table).where(samples_table.c.run_id == run_id).order_by(samples_table.c.id))

    # --- metrics ------------------------------------------------------------------------------------------------

    def add_metrics(self, run_id: int, rows: list[dict]) -> None:
        """Metric rows: dicts with name, value and optionally bin, ci_low, ci_high, n."""
        full = self._metric_rows(run_id, rows)
        if full:
            self._write(insert(metrics_table), full)

    def _metric_rows(self, run_id: int, rows: list[dict]) -> list[dict]:
        run = self.run(run_id)
        return [dict(run_id=run_id, task=run["task"], task_version=run["task_version"], model_id=run["model_id"],
                     model_hash=run["model_hash"], name=r["name"], bin=r.get("bin", ""),
                     value=_float(r.get("value")), ci_low=_float(r.get("ci_low")), ci_high=_float(r.get("ci_high")),
                     n=r.get("n")) for r in rows]

    def metrics(self, *, run_id: int | None = None, task: str | None = None, model_hash: str | None = None,
                name: str | None = None, bin: str | None = None, finished_only: bool = False) -> pd.DataFrame:
        q = (select(metrics_table, runs_table.c.seed, runs_table.c.status, runs_table.c.finished_at)
             .join(runs_table, runs_table.c.id == metrics_table.c.run_id).order_by(metrics_table.c.id))
        for col, val in (("run_id", run_id), ("task", task), ("model_hash", model_hash), ("name", name),
                         ("bin", bin)):
            if val is not None:
                q = q.where(metrics_table.c[col] == val)
        if finished_only:
            q = q.where(runs_table.c.status == "finished")
        return self.frame(q)

    # --- helpers ------------------------------------------------------------------------------------------------

    def _write(self, stmt, params=None) -> None:
        def txn():
            with self.engine.begin() as c:
                c.execute(stmt, params) if params is not None else c.execute(stmt)
        self.transaction(txn)

    def export(self, path: str | Path, fmt: str, *, run_id: int | None = None, task: str | None = None) -> Path:
        """Write metric rows joined with their run (csv, json or parquet)."""
        df = self.metrics(run_id=run_id, task=task)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            df.to_csv(path, index=False)
        elif fmt == "json":
            df.to_json(path, orient="records", date_format="iso", indent=1)
        elif fmt == "parquet":
            df.to_parquet(path, index=False)
        else:
            raise StoreError(f"export format {fmt!r} is not one of csv, json, parquet")
        return path


def _float(v):
    return None if v is None else float(v)
