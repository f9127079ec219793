"""The one way to reach the results database: its URL, an engine, retried transactions, tables created (and
columns added) on open.

SQLite (the default: results/evalsuite.db) runs in WAL mode and every transaction starts with BEGIN IMMEDIATE, so
several processes and the rater web server's threads write to one file by queueing on the busy timeout instead of
failing. Any other SQLAlchemy URL (PostgreSQL) is used as it is.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import MetaData, create_engine, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from .errors import StoreError

DEFAULT_DB = Path("results") / "evalsuite.db"
ENV_VAR = "EVALSUITE_DB"
SQLITE_BUSY_TIMEOUT_S = 120


def database_url(value: str | os.PathLike | None = None) -> str:
    """`value` (a SQLAlchemy URL, or a file path taken as SQLite), else $EVALSUITE_DB, else results/evalsuite.db."""
    url = str(value) if value is not None else (os.environ.get(ENV_VAR) or str(DEFAULT_DB))
    return url if "://" in url else f"sqlite:///{Path(url).resolve()}"


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as e:
        raise StoreError(f"results store URL {url!r} does not work: {e}") from None
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
                           pool_size=20, max_overflow=20)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let the "begin" hook below emit BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def retry(fn, attempts: int = 20):
    """Run a transaction, retrying on a locked database (rare with the busy timeout, possible at WAL setup)."""
    for i in range(attempts):
        try:
            return fn()
        except OperationalError as e:
            message = str(e.orig).lower()
            if ("locked" not in message and "busy" not in message) or i == attempts - 1:
                raise
            time.sleep(0.05 * (i + 1))


def create_tables(engine: Engine, metadata: MetaData) -> None:
    """Creates missing tables, and adds the (nullable) columns a database written by an older version lacks."""
    retry(lambda: metadata.create_all(engine))

    def add_columns():
        existing = inspect(engine)
        for table in metadata.sorted_tables:
            have = {c["name"] for c in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have:
                    kind = column.type.compile(dialect=engine.dialect)
                    with engine.begin() as c:
                        c.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}")
    retry(add_columns)
