"""The promotion gate's decision records, in the results database beside the store's tables.

Own MetaData (table `gate_decisions`, created if missing) on the store's engine, so SQLite gets the store's WAL mode
and BEGIN IMMEDIATE. Records are only ever added: the history is the audit trail, and the latest record for a
(checkpoint hash, stage) is the decision in force. `verified_at` is set when the decision was made on the checkpoint's
files, their content hash computed from every byte at that moment (`evalsuite gate`, a forced promotion); a decision
made on stored evidence alone (the dashboard, when the files are not at hand) leaves it NULL. Promotion itself always
verifies the hash of what it promotes.

outcome   pass | fail | incomplete   written by `evalsuite gate` from the rules (incomplete: nothing failed but some
                                     required evidence is missing, "not evaluated")
          approved | rejected        a person's decision (name and reason required), e.g. from the dashboard
          forced                     promotion despite the evidence (`ttt-omni train --force`, dashboard override)
"""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd
from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, insert, select

from .database import create_tables
from .errors import EvalsuiteError
from .store import Store

OUTCOMES = ("pass", "fail", "incomplete", "approved", "rejected", "forced")
PROMOTING = ("pass", "approved", "forced")
HUMAN = ("approved", "rejected", "forced")

METADATA = MetaData()

decisions_table = Table(
    "gate_decisions", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_hash", String(64), nullable=False, index=True),
    Column("checkpoint", Text, nullable=False),  # the path or spec it was given as (display only)
    Column("stage", Integer, nullable=False),
    Column("curriculum", Text, nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("decided_by", String(200), nullable=False),
    Column("reason", Text, nullable=False),
    Column("rules", Text, nullable=False),  # JSON: each rule's evaluation at decision time
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("verified_at", DateTime(timezone=True)),  # the hash was read from the checkpoint's files then
)


class DecisionError(EvalsuiteError, ValueError):
    """A decision that cannot be recorded (unknown outcome, human decision without name or reason)."""


def _store(store: Store | str | None) -> Store:
    store = store if isinstance(store, Store) else Store(store)
    create_tables(store.engine, METADATA)
    return store


def record(store: Store | str | None, *, model_hash: str, checkpoint: str, stage: int, curriculum: str,
           outcome: str, decided_by: str, reason: str, rules: list[dict], verified: bool = False) -> int:
    """Append a decision; returns its id. `verified`: model_hash was just computed from every byte of the
    checkpoint's files."""
    if outcome not in OUTCOMES:
        raise DecisionError(f"decision outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    if outcome in HUMAN and not (decided_by.strip() and reason.strip()):
        raise DecisionError(f"a {outcome} decision needs the name of the person deciding and a reason")
    store = _store(store)
    row = dict(model_hash=model_hash, checkpoint=str(checkpoint), stage=int(stage), curriculum=str(curriculum),
               outcome=outcome, decided_by=decided_by.strip(), reason=reason.strip(),
               rules=json.dumps(rules, sort_keys=True, default=str), created_at=datetime.now(timezone.utc),
               verified_at=datetime.now(timezone.utc) if verified else None)

    def txn():
        with store.engine.begin() as c:
            return c.execute(insert(decisions_table).values(**row)).inserted_primary_key[0]
    return store.transaction(txn)


def history(store: Store | str | None, *, model_hash: str | None = None, stage: int | None = None) -> pd.DataFrame:
    """Decisions, oldest first; `rules` stays a JSON string (json.loads it to read the evidence)."""
    store = _store(store)
    q = select(decisions_table).order_by(decisions_table.c.id)
    if model_hash is not None:
        q = q.where(decisions_table.c.model_hash == model_hash)
    if stage is not None:
        q = q.where(decisions_table.c.stage == int(stage))
    return store.frame(q)


def latest(store: Store | str | None, model_hash: str, stage: int) -> dict | None:
    """The decision in force for a checkpoint at a stage (the most recent record), or None."""
    df = history(store, model_hash=model_hash, stage=stage)
    return None if df.empty else df.iloc[-1].to_dict()
