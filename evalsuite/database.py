"""The one way to reach the results database: its URL, an engine, retried transactions, tables created (and
columns and indexes added) on open. Every message that shows a URL shows it without its password (`redact`).

SQLite (the default: results/evalsuite.db) runs in WAL mode and every write transaction starts with BEGIN IMMEDIATE,
so several processes and the rater web server's threads write to one file by queueing on the busy timeout instead of
failing; a read-only transaction (`reading(engine)`) starts with a plain BEGIN and takes no write lock, so readers
never queue behind writers. Any other SQLAlchemy URL (PostgreSQL) is used as it is.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Index, MetaData, create_engine, event, inspect
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from .errors import EvalsuiteError, StoreError

DEFAULT_DB = Path("results") / "evalsuite.db"
ENV_VAR = "EVALSUITE_DB"
SQLITE_BUSY_TIMEOUT_S = 120


def database_url(value: str | os.PathLike | None = None) -> str:
    """`value` (a SQLAlchemy URL, or a file path taken as SQLite), else $EVALSUITE_DB, else results/evalsuite.db."""
    url = str(value) if value is not None else (os.environ.get(ENV_VAR) or str(DEFAULT_DB))
    return url if "://" in url else f"sqlite:///{Path(url).resolve()}"


class MigrationNeeded(EvalsuiteError):
    """Existing rows break a unique index that this version adds: the store needs `evalsuite migrate`."""


URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages and printed output."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return mask_passwords(url)


def mask_passwords(text: str) -> str:
    """`text` with the password of every URL in it (scheme://user:PASSWORD@host) replaced by ***: for messages that
    may quote a URL from anywhere (a driver's error, a study's storage)."""
    return URL_PASSWORD.sub(r"\1***@", text)


def _scrub(text: str, url: str) -> str:
    """`text` without the URL's password, wherever a driver may have echoed it."""
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        password = None
    text = text.replace(url, redact(url))
    return text.replace(str(password), "***") if password else text


def open_error(url: str, e: BaseException) -> str:
    """One line saying why the store at `url` cannot be used, password redacted."""
    text = str(getattr(e, "orig", None) or e)
    reason = text.splitlines()[0] if text else type(e).__name__
    low = reason.lower()
    if "not a database" in low:
        reason = "the file is not an SQLite database; expected a results store file or a path for a new one"
    elif "readonly" in low or "read-only" in low:
        reason = f"it cannot be written ({reason}); expected a writable file in a writable folder"
    elif "unable to open database file" in low:
        reason = f"{reason}: the file or its folder cannot be created or opened there"
    return _scrub(f"cannot use results store {redact(url)}: {reason}", url)


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError, ValueError) as e:
        raise StoreError(_scrub(f"results store URL {redact(url)} does not work: {e}", url)) from None
    if parsed.database and parsed.database != ":memory:" and not parsed.query.get("uri"):
        folder = Path(parsed.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
            why = f"{blocker} is a file" if blocker else (e.strerror or str(e))
            raise StoreError(f"cannot use results store {redact(url)}: its folder {folder} cannot be made ({why}); "
                             "expected a path in a writable folder") from None
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
                           pool_size=20, max_overflow=20)
    return sqlite_transactions(engine)


def sqlite_transactions(engine: Engine) -> Engine:
    """SQLite's settings for several writers (WAL, busy timeout, BEGIN IMMEDIATE) on an engine's new connections;
    also for engines made elsewhere on the same file (Optuna's study storage)."""

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
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

    return engine


READ_ONLY = "evalsuite_read_only"


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for a read-only transaction (on SQLite a plain BEGIN: no write lock)."""
    with engine.connect() as c:
        yield c.execution_options(**{READ_ONLY: True})


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


def check_writable(engine: Engine, table: str) -> None:
    """Raises the driver's error now if the database cannot be written (read-only or immutable file, read-only
    connection), instead of after an evaluation: a write that deletes nothing, rolled back."""
    with engine.connect() as c:
        c.exec_driver_sql(f"DELETE FROM {table} WHERE 1 = 0")
        c.rollback()


# The PostgreSQL advisory lock that one process at a time holds while it creates tables and indexes (an arbitrary
# 64-bit number: "evalsuit" in ASCII).
SCHEMA_LOCK = 0x6576616C73756974


@contextmanager
def schema_lock(engine: Engine) -> Iterator[None]:
    """On PostgreSQL, waits for other processes creating the schema: two CREATE TABLEs of one table at once collide
    in the catalog (duplicate key in pg_type), so the first opens of a new database by several processes failed.
    SQLite needs none: its BEGIN IMMEDIATE already takes turns."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as c:
        c.exec_driver_sql(f"SELECT pg_advisory_lock({SCHEMA_LOCK})")
        try:
            yield
        finally:
            c.exec_driver_sql(f"SELECT pg_advisory_unlock({SCHEMA_LOCK})")


def create_tables(engine: Engine, metadata: MetaData, *, indexes: bool = True) -> None:
    """Creates missing tables, adds the (nullable) columns a database written by an older version lacks, and (with
    `indexes`) its missing indexes; a unique index that existing rows break raises MigrationNeeded."""
    with schema_lock(engine):
        _create_tables(engine, metadata, indexes)


def _create_tables(engine: Engine, metadata: MetaData, indexes: bool) -> None:
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
    if not indexes:
        return

    def add_indexes():
        for index in missing_indexes(engine, metadata):
            try:
                index.create(engine)
            except IntegrityError:
                raise MigrationNeeded(f"table {index.table.name} holds rows that break the unique index {index.name} "
                                      f"({', '.join(c.name for c in index.columns)})") from None
    retry(add_indexes)


def missing_indexes(bind: Engine | Connection, metadata: MetaData) -> list[Index]:
    """The indexes of `metadata`'s tables that the database does not have yet."""
    existing = inspect(bind)
    missing = []
    for table in metadata.sorted_tables:
        have = {i["name"] for i in existing.get_indexes(table.name)}
        missing += [index for index in table.indexes if index.name not in have]
    return missing
