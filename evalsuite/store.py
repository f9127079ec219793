"""Results store: every evaluation result lives here (SQLAlchemy; a SQLite file by default, any SQL URL).

Tables
  runs     one evaluation of one task on one model: task, task_version, task_kind, model_id, model_hash, model_spec,
           config (JSON), config_hash, code_version, environment (JSON: libraries, device, numerics, code hash; see
           evalsuite.environment), data (JSON: what the run read: source, documents) and data_hash (sha256 of
           those documents, evalsuite.corpus.corpus_hash), seed, host, n_units, status (running | finalizing |
           finished | failed), error, started_at, finished_at. `resume_key` (unique while the run is unfinished, NULL
           after) lets an interrupted or sharded run be picked up by the next process with the same identity,
           environment and data included. `finalizer` and `heartbeat_at` are the finalize lease (below).
  units    the finished units of work of a run (e.g. one document): run_id, key, shard, host, finished_at.
  samples  per-unit measurements: run_id, unit, name, bin, value, n, data (JSON).
  metrics  the results: run_id, task, task_version, model_id, model_hash, name, bin (e.g. "length=8192", "" for
           none), value, ci_low, ci_high, n. Task and model are repeated here so that a query such as "degradation_pct
           at length=8192 for model hash X" needs no join. (run, task, name, bin) is unique: no row lands twice.

Finalizing is leased: once every unit is stored, exactly one process claims the run (status finalizing, its own
lease token in `finalizer`), renews `heartbeat_at` while it aggregates, and writes the metrics and `finished` in one
transaction only while it still holds the lease. Another process that finds the run finalizing waits for it; a
finalizer that died (no heartbeat for FINALIZE_LEASE_S, default 120 s, $EVALSUITE_FINALIZE_LEASE_S) is taken over.
Other parts keep their tables on `METADATA` too (the gate's decisions, evalsuite.gate_db); `Store()` creates missing
tables and adds columns that a store written by an older version lacks (all such columns are nullable). The
database itself (URL, engine, SQLite's WAL and BEGIN IMMEDIATE) is evalsuite.database's.

API: `Store(url, write=False)` (write=True: refuse a store that cannot be written, before any work), `start_run(...)`,
`done_units(run_id)`, `add_unit(run_id, key, samples)`, `samples(run_id)`, `finalize(run_id, aggregate)` (claim,
aggregate under the lease, complete), `claim_finalize(run_id)` -> lease token, `complete_run(run_id, rows, lease)`
(metrics + finished, atomically), `add_metrics(run_id, rows)`, `finish_run(run_id, status)`, `run(run_id)`,
`runs(...)`, `metrics(...)` (plain dicts / pandas DataFrames), `export(...)`, and for other tables on METADATA
`transaction(fn)` (a retried write) and `frame(query)`. `migrate(url)` repairs a store written before the unique
constraint (`evalsuite migrate`).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from sqlalchemy import (Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, delete, func, insert, select, update)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ttt_omni.atomic import replacing_file

from .database import (MigrationNeeded, check_writable, create_tables, database_url, make_engine, missing_indexes,
                       open_error, redact, retry)
from .errors import StoreError

LEASE_ENV = "EVALSUITE_FINALIZE_LEASE_S"
FINALIZE_LEASE_S = 120.0
METRICS_UNIQUE = "uq_metrics_run_task_name_bin"

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
    Column("data", Text),  # JSON {"source", "documents"}; NULL before data identities were recorded
    Column("data_hash", String(64), index=True),  # NULL: the run read no documents (or was stored before)
    Column("seed", Integer, nullable=False),
    Column("host", String(200), nullable=False),
    Column("n_units", Integer, nullable=False),
    Column("status", String(20), nullable=False, index=True),
    Column("error", Text),
    Column("resume_key", String(64), unique=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("finalizer", String(100)),  # the finalize lease's token while status is finalizing
    Column("heartbeat_at", Float),  # seconds since the epoch: the finalizer's last sign of life
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
    Index(METRICS_UNIQUE, "run_id", "task", "name", "bin", unique=True),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def config_hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Store:
    """A results database. `url` is any SQLAlchemy URL or a plain file path (taken as SQLite); None = $EVALSUITE_DB
    or results/evalsuite.db. `write=True` checks at once that the store can be written (a read-only or immutable
    file, a file that is not a database, a folder that is a file: one StoreError, before any work is done)."""

    def __init__(self, url: str | os.PathLike | None = None, *, write: bool = False):
        self.url = database_url(url)
        self.where = redact(self.url)  # the URL as it may be shown: without its password
        self.lease_s = _lease_seconds()
        self.engine = make_engine(self.url)
        try:
            create_tables(self.engine, METADATA)
            if write:
                check_writable(self.engine, runs_table.name)
        except MigrationNeeded as e:
            raise StoreError(f"results store {self.where}: {e}; `evalsuite migrate --db URL` removes the duplicate "
                             "copies left by older versions and adds the constraint") from None
        except (SQLAlchemyError, OSError) as e:
            raise StoreError(open_error(self.url, e)) from None

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
                  environment: dict | None = None, data: dict | None = None, host: str | None = None,
                  resume: bool = True) -> int:
        """Create a run, or with `resume` return the unfinished run with the same identity (task, version, model
        hash, config, seed, environment, data) so that its finished units are kept. Safe against several processes
        at once. `data`: what the run reads, {"source", "documents", "hash"} (TaskKind.data_identity)."""
        chash = config_hash(config)
        data_hash = (data or {}).get("hash")
        key = config_hash([task, task_version, model_hash, chash, seed, environment]
                          + ([data_hash] if data_hash else []))
        row = dict(task=task, task_version=task_version, task_kind=task_kind, model_id=model_id,
                   model_hash=model_hash, model_spec=model_spec, config=json.dumps(config, sort_keys=True, default=str),
                   config_hash=chash, code_version=code_version, seed=seed, host=host or socket.gethostname(),
                   environment=None if environment is None else json.dumps(environment, sort_keys=True),
                   data=None if data is None else json.dumps({k: v for k, v in data.items() if k != "hash"},
                                                             sort_keys=True),
                   data_hash=data_hash, n_units=n_units, status="running", started_at=_now())

        def txn():
            with self.engine.begin() as c:
                existing = c.execute(select(runs_table.c.id).where(runs_table.c.resume_key == key)).scalar()
                if existing is not None and resume:
                    # failed: its units are kept, the rest is redone. A run being finalized is left to its
                    # finalizer (or taken over by `finalize` once that one's lease has run out).
                    c.execute(update(runs_table).where(runs_table.c.id == existing)
                              .where(runs_table.c.status == "failed").values(status="running", error=None))
                    return existing
                if existing is not None:  # a fresh run was asked for: the old one stays, unfinished, unresumable
                    c.execute(update(runs_table).where(runs_table.c.id == existing).values(resume_key=None))
                return c.execute(insert(runs_table).values(**row, resume_key=key)).inserted_primary_key[0]

        for _ in range(5):
            try:
                return self.transaction(txn)
            except IntegrityError:  # another process created it between our select and insert (non-SQLite)
                continue
        raise StoreError(f"could not create or resume a run of {task} in {self.where}")

    def finish_run(self, run_id: int, status: str = "finished", error: str | None = None) -> None:
        """Mark a run finished (it can no longer be resumed) or failed (the next identical run resumes it). A run
        being finalized belongs to its finalizer: only `finalize` ends it."""
        values = dict(status=status, error=error, finished_at=_now())
        if status == "finished":
            values["resume_key"] = None
        self._write(update(runs_table).where(runs_table.c.id == run_id)
                    .where(runs_table.c.status.in_(("running", "failed"))).values(**values))

    def finalize(self, run_id: int, aggregate: Callable[[], list[dict]],
                 on_wait: Callable[[dict], None] | None = None) -> bool:
        """If every unit is stored: aggregate (under the lease, renewed while `aggregate()` runs) and complete the
        run; if another live process is finalizing it, wait for that one (`on_wait(run)` is called once). True once
        the run is finished, False while units are missing (other shards still run)."""
        waited = False
        while True:
            lease = self.claim_finalize(run_id)
            if lease is not None:
                try:
                    with self._heartbeat(run_id, lease):
                        rows = aggregate()
                except BaseException as e:
                    self._write(update(runs_table).where(runs_table.c.id == run_id)
                                .where(runs_table.c.finalizer == lease)
                                .values(status="failed", error=f"{type(e).__name__}: {e}", finalizer=None,
                                        heartbeat_at=None, finished_at=_now()))
                    raise
                if self.complete_run(run_id, rows, lease):
                    return True
                continue  # the lease ran out and another process took the run over: wait for it
            run = self.run(run_id)
            if run["status"] != "finalizing":
                return run["status"] == "finished"
            if on_wait is not None and not waited:
                on_wait(run)
            waited = True
            time.sleep(min(1.0, self.lease_s / 10))

    def claim_finalize(self, run_id: int) -> str | None:
        """A lease token for exactly one caller once every unit of the run is done (the run is then finalizing),
        else None. A finalizing run whose finalizer sent no heartbeat for the lease time is claimed anew."""
        lease = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(8)}"

        def txn():
            with self.engine.begin() as c:
                n_units = c.execute(select(runs_table.c.n_units).where(runs_table.c.id == run_id)).scalar()
                done = c.execute(select(func.count()).select_from(units_table)
                                 .where(units_table.c.run_id == run_id)).scalar()
                if n_units is None or done < n_units:
                    return None
                now = time.time()
                stale = ((runs_table.c.status == "finalizing")
                         & (runs_table.c.heartbeat_at.is_(None) | (runs_table.c.heartbeat_at < now - self.lease_s)))
                res = c.execute(update(runs_table).where(runs_table.c.id == run_id)
                                .where(runs_table.c.status.in_(("running", "failed")) | stale)
                                .values(status="finalizing", finalizer=lease, heartbeat_at=now))
                return lease if res.rowcount == 1 else None
        return self.transaction(txn)

    @contextmanager
    def _heartbeat(self, run_id: int, lease: str):
        """Renews the lease every quarter of its length until the block ends."""
        stop = threading.Event()

        def beat():
            while not stop.wait(self.lease_s / 4):
                try:
                    self._write(update(runs_table).where(runs_table.c.id == run_id)
                                .where(runs_table.c.finalizer == lease).values(heartbeat_at=time.time()))
                except SQLAlchemyError:  # the store is unreachable: the lease may run out; complete_run will see it
                    return

        thread = threading.Thread(target=beat, name=f"finalize-heartbeat-{run_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def complete_run(self, run_id: int, rows: list[dict], lease: str) -> bool:
        """Write the metric rows and mark the run finished, in one transaction (all or nothing), if `lease` (from
        claim_finalize) still holds the run; False (nothing written) when another process has taken it over."""
        full = self._metric_rows(run_id, rows)

        def txn():
            with self.engine.begin() as c:
                res = c.execute(update(runs_table).where(runs_table.c.id == run_id)
                                .where(runs_table.c.status == "finalizing").where(runs_table.c.finalizer == lease)
                                .values(status="finished", error=None, finished_at=_now(), resume_key=None,
                                        finalizer=None, heartbeat_at=None))
                if res.rowcount != 1:
                    return False
                if full:
                    c.execute(insert(metrics_table), full)
                return True
        try:
            return self.transaction(txn)
        except IntegrityError:
            raise StoreError(f"run {run_id} in {self.where}: its metric rows are already stored (the rows of a run "
                             "are unique by task, name and bin)") from None

    def run(self, run_id: int) -> dict:
        with self.engine.connect() as c:
            row = c.execute(select(runs_table).where(runs_table.c.id == run_id)).mappings().first()
        if row is None:
            raise StoreError(f"no run {run_id} in {self.where}")
        out = dict(row)
        out["config"] = json.loads(out["config"])
        out["environment"] = json.loads(out["environment"]) if out["environment"] else None
        out["data"] = json.loads(out["data"]) if out["data"] else None
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
        """Metric rows: dicts with name, value and optionally bin, ci_low, ci_high, n (unique by name and bin)."""
        full = self._metric_rows(run_id, rows)
        if not full:
            return
        try:
            self._write(insert(metrics_table), full)
        except IntegrityError:
            raise StoreError(f"run {run_id} in {self.where}: a metric row of the same name and bin is already "
                             "stored; a result is never written twice") from None

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
        """Write metric rows joined with their run (csv, json or parquet), atomically."""
        if fmt not in ("csv", "json", "parquet"):
            raise StoreError(f"export format {fmt!r} is not one of csv, json, parquet")
        df = self.metrics(run_id=run_id, task=task)
        path = Path(path)
        try:
            with replacing_file(path) as tmp:
                if fmt == "csv":
                    df.to_csv(tmp, index=False)
                elif fmt == "json":
                    df.to_json(tmp, orient="records", date_format="iso", indent=1)
                else:
                    df.to_parquet(tmp, index=False)
        except OSError as e:
            raise StoreError(f"cannot write the metric rows to {path} ({e.strerror or e}); expected a writable file "
                             "path") from None
        return path


def migrate(url: str | os.PathLike | None = None) -> dict:
    """Brings a store written by an older version up to date: metric rows stored twice (the finalize race) are
    reduced to one when their copies are identical, and the unique constraint is added, in one transaction. When
    copies differ nothing is removed: they are named (the constraint cannot be added until a person decides), with
    how many identical copies would go. Returns {"removed": how many rows were removed}."""
    url = database_url(url)
    engine = make_engine(url)
    try:
        create_tables(engine, METADATA, indexes=False)
        m = metrics_table.c
        with engine.connect() as c:
            rows = c.execute(select(m.id, m.run_id, m.task, m.name, m.bin, m.value, m.ci_low, m.ci_high, m.n)
                             .order_by(m.id)).fetchall()
    except (SQLAlchemyError, OSError) as e:
        raise StoreError(open_error(url, e)) from None
    copies: dict[tuple, list] = {}
    for r in rows:
        copies.setdefault((r.run_id, r.task, r.name, r.bin), []).append(r)
    removed, conflicts = [], []
    for (run_id, _task, name, bin_), group in sorted(copies.items(), key=lambda kv: kv[1][0].id):
        if len(group) < 2:
            continue
        if len({tuple(_same(x) for x in (r.value, r.ci_low, r.ci_high, r.n)) for r in group}) == 1:
            removed += [r.id for r in group[1:]]
        else:
            conflicts.append(f"run {run_id} {name} {bin_ or '(no bin)'}")
    where = redact(url)
    if conflicts:
        raise StoreError(f"results store {where}: metric rows stored twice with different values, kept for a person "
                         f"to decide (delete the wrong copy, then migrate again): {'; '.join(conflicts[:10])}; "
                         f"nothing was changed ({len(removed)} identical copies are removed once these are resolved)")

    def txn():
        with engine.begin() as c:
            if removed:
                c.execute(delete(metrics_table).where(metrics_table.c.id.in_(removed)))
            for index in missing_indexes(c, METADATA):
                index.create(c)
    try:
        retry(txn)
    except IntegrityError as e:
        raise StoreError(f"results store {where}: a unique index cannot be added ({' '.join(str(e.orig).split())}); "
                         "nothing was changed") from None
    except (SQLAlchemyError, OSError) as e:
        raise StoreError(f"{open_error(url, e)}; nothing was changed (the migration is one transaction)") from None
    finally:
        engine.dispose()
    return {"removed": len(removed)}


def _same(x):
    """NaN compares equal to NaN here: identical copies of a NaN metric are one row."""
    return "nan" if isinstance(x, float) and x != x else x


def _lease_seconds() -> float:
    text = os.environ.get(LEASE_ENV, "").strip()
    if not text:
        return FINALIZE_LEASE_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise StoreError(f"${LEASE_ENV}={text!r}: expected a positive number of seconds")
    return value


def _float(v):
    return None if v is None else float(v)
