"""Append-only, hash-chained audit log, and the signed checkpoints of its head.

Appends are serialised by the database, not by the process: on SQLite `append` takes the
write lock before it reads the head (BEGIN IMMEDIATE), on Postgres an exclusive table
lock, so several worker processes extend one chain instead of forking it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.contracts.hashing import sha256_hex

GENESIS = "0" * 64


class AuditEntry(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("run_key", "step", name="uq_audit_step"),)

    seq: int | None = Field(default=None, primary_key=True)
    at: datetime
    workflow_id: str = Field(index=True)
    run_key: str = Field(index=True)
    step: str
    actor: str
    input_hash: str
    decision: dict = Field(sa_column=Column(JSON, nullable=False))
    bundle_hash: str
    spec_hash: str
    prev_hash: str
    hash: str


def _entry_hash(prev_hash: str, event: AuditEvent, at: datetime) -> str:
    return sha256_hex({"prev": prev_hash, "at": at.isoformat(), **event.model_dump(mode="json")})


def _row_hash(prev_hash: str, row: AuditEntry) -> str:
    ev = AuditEvent(**row.model_dump(exclude={"seq", "at", "prev_hash", "hash"}))
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)  # SQLite hands it back naive
    return _entry_hash(prev_hash, ev, at)


def append(engine: Engine, events: list[AuditEvent]) -> int:
    """Append events in one transaction; an already-recorded (run_key, step) is skipped,
    so a retried activity never writes a step twice. Returns how many were written."""
    written = 0
    with Session(engine) as session:
        lock_chain(session)
        last = session.exec(
            select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(1)
        ).first()
        prev = last.hash if last else GENESIS
        for ev in events:
            exists = session.exec(
                select(AuditEntry.seq).where(
                    AuditEntry.run_key == ev.run_key, AuditEntry.step == ev.step
                )
            ).first()
            if exists is not None:
                continue
            at = datetime.now(UTC)
            digest = _entry_hash(prev, ev, at)
            session.add(AuditEntry(at=at, prev_hash=prev, hash=digest, **ev.model_dump()))
            prev = digest
            written += 1
        session.commit()
    return written


def lock_chain(session: Session) -> None:
    """Take the chain's write lock for this transaction, before the head is read: the
    read-head/insert pair is then atomic across threads and processes. (A deferred SQLite
    transaction would read the head in one snapshot and insert in a later one: a fork.)"""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        session.connection().exec_driver_sql("LOCK TABLE auditentry IN EXCLUSIVE MODE")


class AuditCheckpoint(SQLModel, table=True):
    """A signed statement of the chain's head: "entry `seq` has hash `head_hash` and the
    chain holds `entries` entries up to it". The chain alone cannot show that its newest
    entries were cut, or that it was rewritten from some entry on with recomputed hashes;
    a checkpoint signed with a key the store does not hold can. Checkpoints link to each
    other (`prev`: the hash of the previous checkpoint's signature)."""

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(index=True)
    head_hash: str
    entries: int
    at: datetime
    key_id: str
    prev: str
    signature: str  # hex Ed25519 over `checkpoint_message(...)`


def checkpoint_message(
    *, seq: int, head_hash: str, entries: int, at: datetime, key_id: str, prev: str
) -> bytes:
    """The exact bytes a checkpoint's signature covers (canonical JSON)."""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite hands it back naive
    body = {
        "seq": seq,
        "head_hash": head_hash,
        "entries": entries,
        "at": at.isoformat(),
        "key_id": key_id,
        "prev": prev,
    }
    return sha256_hex(body).encode()


@dataclass(frozen=True)
class ChainBreak:
    """The first entry that does not verify. `audit.link_broken`: its prev_hash is not the
    hash of the entry before it (an entry was removed, reordered or re-hashed);
    `audit.entry_altered`: its hash does not cover its own content and link."""

    seq: int
    code: Literal["audit.link_broken", "audit.entry_altered"]


@dataclass(frozen=True)
class ChainCheck:
    checked: int  # entries that verified, in order, before the break (all of them if intact)
    broken: ChainBreak | None = None

    @property
    def intact(self) -> bool:
        return self.broken is None


def check_chain(session: Session) -> ChainCheck:
    """Recompute every link; name the first entry that does not verify. A truncated tail
    leaves a shorter chain that still verifies: only a signed checkpoint of the head shows it."""
    prev = GENESIS
    n = 0
    for row in session.exec(select(AuditEntry).order_by(col(AuditEntry.seq))):
        assert row.seq is not None  # a stored row always has one
        if row.prev_hash != prev:
            return ChainCheck(n, ChainBreak(row.seq, "audit.link_broken"))
        if row.hash != _row_hash(prev, row):
            return ChainCheck(n, ChainBreak(row.seq, "audit.entry_altered"))
        prev = row.hash
        n += 1
    return ChainCheck(n)


def verify_chain(session: Session) -> tuple[bool, int]:
    """(intact, entries checked); `check_chain` also says which entry broke and how."""
    check = check_chain(session)
    return check.intact, check.checked
