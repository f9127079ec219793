"""Human-eval tables (bundles, raters, assignments, votes, vote audit) in the results database.

Own MetaData, created if missing, on the same SQL URL as the results store. Every operation is one transaction.
On SQLite the file runs in WAL mode and write transactions start with BEGIN IMMEDIATE, so concurrent raters queue
on the busy timeout instead of failing; reads (a rater's link, progress, the summary) take no write lock. Votes hold the side the rater saw (left/right/tie), never a system name:
the mapping to systems lives only in the bundle key.

A vote is unique per (rater, pair). Its `revision` counts submissions; the form carries the revision it was
rendered with, so a re-sent (replayed) form is refused while a fresh form replaces the vote and audits the old one.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import datetime, timezone

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    func,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .. import database
from ..errors import EvalsuiteError, StoreError

CHOICES = ("left", "right", "tie")
MAX_COMMENT = 2000

metadata = MetaData()

bundles = Table(
    "he_bundles",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("task", String(200), nullable=False),
    Column("n_pairs", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

raters = Table(
    "he_raters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bundle_id", String(32), ForeignKey("he_bundles.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("bundle_id", "name"),
)

assignments = Table(
    "he_assignments",
    metadata,
    Column("rater_id", Integer, ForeignKey("he_raters.id"), primary_key=True),
    Column("pair_id", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
)

votes = Table(
    "he_votes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rater_id", Integer, ForeignKey("he_raters.id"), nullable=False),
    Column("pair_id", String(64), nullable=False),
    Column("choice", String(8), nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("revision", Integer, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("rater_id", "pair_id"),
)

vote_audit = Table(
    "he_vote_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("vote_id", Integer, ForeignKey("he_votes.id"), nullable=False),
    Column("old_choice", String(8), nullable=False),
    Column("old_comment", Text, nullable=False),
    Column("old_revision", Integer, nullable=False),
    Column("new_choice", String(8), nullable=False),
    Column("new_comment", Text, nullable=False),
    Column("replaced_at", DateTime(timezone=True), nullable=False),
)


class RaterError(EvalsuiteError, ValueError):
    """A rater that cannot be added (bad name, pair count, or a name already taken)."""


class VoteError(ValueError):
    """A vote that cannot be accepted; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _now() -> datetime:
    return datetime.now(timezone.utc)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_engine(url: str, *, write: bool = False) -> Engine:
    """An engine for `url` (evalsuite.database's) with the human-eval tables created if missing; `write=True` also
    checks that the store can be written. A store that cannot be used is a StoreError (one line, password hidden)."""
    engine = database.make_engine(url)
    try:
        database.create_tables(engine, metadata)
        if write:
            database.check_writable(engine, votes.name)
    except (SQLAlchemyError, OSError) as e:
        raise StoreError(database.open_error(url, e)) from None
    return engine


def register_bundle(engine: Engine, bundle_id: str, task: str, n_pairs: int) -> None:
    try:
        with engine.begin() as c:
            row = c.execute(select(bundles).where(bundles.c.id == bundle_id)).first()
            if row is None:
                c.execute(bundles.insert().values(id=bundle_id, task=task, n_pairs=n_pairs, created_at=_now()))
    except IntegrityError:  # another server worker registered it at the same moment
        pass


def add_rater(engine: Engine, bundle_id: str, name: str, pair_ids: Sequence[str], n: int | None = None) -> str:
    """Create a rater with n (default all) of the bundle's pairs in a random order; return the secret token.

    Only the token's SHA-256 is stored, so the link can be shown once and never again.
    """
    name = name.strip()
    if not name or len(name) > 200:
        raise RaterError(f"rater name: expected 1..200 characters, got {name!r}")
    if n is not None and not 1 <= n <= len(pair_ids):
        raise RaterError(f"pairs per rater: expected 1..{len(pair_ids)}, got {n}")
    order = list(pair_ids)
    secrets.SystemRandom().shuffle(order)
    order = order[: n or len(order)]
    token = secrets.token_urlsafe(24)
    with engine.begin() as c:
        if c.execute(select(raters.c.id).where(raters.c.bundle_id == bundle_id, raters.c.name == name)).first():
            raise RaterError(f"rater {name!r} already exists for bundle {bundle_id}")
        rid = c.execute(
            raters.insert().values(bundle_id=bundle_id, name=name, token_hash=hash_token(token), created_at=_now())
        ).inserted_primary_key[0]
        c.execute(assignments.insert(), [{"rater_id": rid, "pair_id": p, "position": i} for i, p in enumerate(order)])
    return token


def rater_for_token(engine: Engine, bundle_id: str, token: str):
    """The rater row (id, name) whose secret is `token` in this bundle, or None."""
    with database.reading(engine) as c:
        return c.execute(
            select(raters.c.id, raters.c.name).where(
                raters.c.token_hash == hash_token(token), raters.c.bundle_id == bundle_id
            )
        ).first()


def rater_state(engine: Engine, rater_id: int) -> tuple[list[str], dict[str, tuple[str, str, int]]]:
    """(assigned pair ids in the rater's order, {pair_id: (choice, comment, revision)} of votes cast)."""
    with database.reading(engine) as c:
        order = list(
            c.execute(
                select(assignments.c.pair_id).where(assignments.c.rater_id == rater_id).order_by(assignments.c.position)
            ).scalars()
        )
        cast = {
            r.pair_id: (r.choice, r.comment, r.revision)
            for r in c.execute(
                select(votes.c.pair_id, votes.c.choice, votes.c.comment, votes.c.revision).where(
                    votes.c.rater_id == rater_id
                )
            )
        }
    return order, cast


def cast_vote(engine: Engine, rater_id: int, pair_id: str, choice: str, comment: str, form_revision: int) -> int:
    """Record the rater's vote on a pair and return its new revision.

    `form_revision` is the revision the form was rendered with (0 = no vote yet); any other value means the form
    was already submitted (a replay or a second tab) and the vote is refused with 409.
    """
    if choice not in CHOICES:
        raise VoteError(f"choice: expected one of {', '.join(CHOICES)}, got {choice[:20]!r}", 422)
    if len(comment) > MAX_COMMENT:
        raise VoteError(f"comment: at most {MAX_COMMENT} characters, got {len(comment)}", 422)
    stale = VoteError("this form was already submitted; reload the pair to change your answer", 409)
    try:
        with engine.begin() as c:
            assigned = c.execute(
                select(assignments.c.pair_id).where(
                    assignments.c.rater_id == rater_id, assignments.c.pair_id == pair_id
                )
            ).first()
            if assigned is None:
                raise VoteError("this pair is not assigned to you", 403)
            old = c.execute(select(votes).where(votes.c.rater_id == rater_id, votes.c.pair_id == pair_id)).first()
            if old is None:
                if form_revision != 0:
                    raise stale
                c.execute(
                    votes.insert().values(
                        rater_id=rater_id, pair_id=pair_id, choice=choice, comment=comment, revision=1, updated_at=_now()
                    )
                )
                return 1
            if form_revision != old.revision:
                raise stale
            c.execute(
                vote_audit.insert().values(
                    vote_id=old.id,
                    old_choice=old.choice,
                    old_comment=old.comment,
                    old_revision=old.revision,
                    new_choice=choice,
                    new_comment=comment,
                    replaced_at=_now(),
                )
            )
            c.execute(
                votes.update()
                .where(votes.c.id == old.id, votes.c.revision == old.revision)
                .values(choice=choice, comment=comment, revision=old.revision + 1, updated_at=_now())
            )
            return old.revision + 1
    except IntegrityError:  # a concurrent first submit of the same form won the unique (rater, pair) row
        raise stale from None


def bundle_votes(engine: Engine, bundle_id: str) -> list[dict]:
    """All current votes of a bundle: rater name, pair id, choice, comment, revision."""
    q = (
        select(raters.c.name.label("rater"), votes.c.pair_id, votes.c.choice, votes.c.comment, votes.c.revision)
        .join(raters, raters.c.id == votes.c.rater_id)
        .where(raters.c.bundle_id == bundle_id)
        .order_by(raters.c.name, votes.c.pair_id)
    )
    with database.reading(engine) as c:
        return [dict(r._mapping) for r in c.execute(q)]


def bundle_raters(engine: Engine, bundle_id: str) -> list[dict]:
    """Per rater: name, pairs assigned, votes cast, votes replaced."""
    with database.reading(engine) as c:
        rows = c.execute(select(raters.c.id, raters.c.name).where(raters.c.bundle_id == bundle_id).order_by(raters.c.name))
        out = []
        for r in rows.all():
            n_assigned = c.execute(select(func.count()).where(assignments.c.rater_id == r.id)).scalar_one()
            n_voted = c.execute(select(func.count()).where(votes.c.rater_id == r.id)).scalar_one()
            n_replaced = c.execute(
                select(func.count()).select_from(vote_audit.join(votes, votes.c.id == vote_audit.c.vote_id)).where(
                    votes.c.rater_id == r.id
                )
            ).scalar_one()
            out.append({"rater": r.name, "assigned": n_assigned, "voted": n_voted, "replaced": n_replaced})
    return out
