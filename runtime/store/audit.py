"""Append-only, hash-chained audit log, and the signed checkpoints of its head.

Appends are serialised by the database, not by the process: on SQLite `append` takes the
write lock before it reads the head (BEGIN IMMEDIATE), on Postgres an exclusive table
lock, so several worker processes extend one chain instead of forking it.

An entry's hash covers a digest of its `decision` payload (`decision_hash`), not the
payload itself: erasing a person (or a payload past retention) replaces the payload with
a tombstone and keeps the digest, so the chain still verifies. A tombstone must be
vouched for by a later `erase`/`retention` entry of the chain (which names the entries it
tombstoned and, for an erasure, each tombstone's digest); a payload changed without one,
or a tombstone that entry does not vouch for, is an edit. Entries written before the
digest existed (`decision_hash` NULL) are hashed over their whole payload, as before."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

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
    # sha256 of the canonical decision as written; None: written before it existed.
    decision_hash: str | None = None
    bundle_hash: str
    spec_hash: str
    prev_hash: str
    hash: str


# The steps that tombstone other entries' payloads; they carry no personal data and are
# themselves never tombstoned (they vouch for the tombstones).
PRIVACY_STEPS = frozenset({"erase", "retention"})


def decision_digest(decision: dict[str, Any]) -> str:
    return sha256_hex(decision)


def _legacy_hash(prev_hash: str, event: AuditEvent, at: datetime) -> str:
    return sha256_hex({"prev": prev_hash, "at": at.isoformat(), **event.model_dump(mode="json")})


def _digest_hash(prev_hash: str, at: datetime, decision_hash: str, fields: dict[str, Any]) -> str:
    return sha256_hex(
        {"prev": prev_hash, "at": at.isoformat(), "decision_hash": decision_hash, **fields}
    )


def _entry_hash(prev_hash: str, event: AuditEvent, at: datetime) -> str:
    fields = event.model_dump(mode="json", exclude={"decision"})
    return _digest_hash(prev_hash, at, decision_digest(event.decision), fields)


def _row_hash(prev_hash: str, row: AuditEntry) -> str:
    """The hash `row` must have: over its decision's digest, recomputed from the payload
    unless it is a tombstone (then the stored digest of the erased payload); for an entry
    written before digests, over its whole payload."""
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)  # SQLite hands it back naive
    fields = row.model_dump(exclude={"seq", "at", "prev_hash", "hash", "decision_hash"})
    if row.decision_hash is None:
        return _legacy_hash(prev_hash, AuditEvent(**fields), at)
    decision = fields.pop("decision")
    digest = row.decision_hash if tombstone_mark(decision) else decision_digest(decision)
    return _digest_hash(prev_hash, at, digest, fields)


def append(engine: Engine, events: list[AuditEvent]) -> int:
    """Append events in one transaction; an already-recorded (run_key, step) is skipped,
    so a retried activity never writes a step twice. Returns how many were written."""
    with Session(engine) as session:
        lock_chain(session)
        written = append_locked(session, events)
        session.commit()
    return written


def append_locked(session: Session, events: list[AuditEvent]) -> int:
    """`append` inside the caller's transaction, which already holds `lock_chain`: an
    erasure writes its own entry in the same transaction as the tombstones it vouches for."""
    written = 0
    last = session.exec(select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(1)).first()
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
        dh = decision_digest(ev.decision)
        session.add(
            AuditEntry(at=at, prev_hash=prev, hash=digest, decision_hash=dh, **ev.model_dump())
        )
        session.flush()  # the next append in this transaction reads this one as the head
        prev = digest
        written += 1
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


def tombstone_mark(decision: dict[str, Any]) -> dict[str, Any] | None:
    """The tombstone marker of an erased payload ({"by": "erase"|"retention", "ref":
    the run_key of the entry that vouches for it}); None for a payload as written."""
    mark = decision.get("erased")
    return mark if isinstance(mark, dict) else None


def sealed_digest(row: AuditEntry) -> str:
    """Digest of a tombstoned entry as the erasure left it (every field but `seq`): the
    vouching entry records it, so a tombstone edited afterwards is named."""
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    return sha256_hex({**row.model_dump(mode="json", exclude={"seq", "at"}), "at": at.isoformat()})


def entry_problem(prev: str, row: AuditEntry, vouchers: dict[str, AuditEntry]) -> str | None:
    """Why `row` (linked to `prev`) does not verify, or None. `vouchers`: the chain's
    erase/retention entries by run_key."""
    assert row.seq is not None  # a stored row always has one
    mark = tombstone_mark(row.decision)
    if mark is not None:
        owner = vouchers.get(str(mark.get("ref")))
        if owner is None:
            return f"entry {row.seq} holds a tombstone no erasure vouches for"
        sealed = (owner.decision.get("tombstones") or {}).get(str(row.seq))
        if sealed != sealed_digest(row):
            return f"entry {row.seq} was edited after entry {owner.seq} tombstoned it"
        if row.decision_hash is None:  # written before digests: the seal is all there is
            return None
    if row.hash != _row_hash(prev, row):
        return f"entry {row.seq} was edited: its hash does not cover its content"
    return None


def vouchers_of(rows: list[AuditEntry]) -> dict[str, AuditEntry]:
    return {r.run_key: r for r in rows if r.step in PRIVACY_STEPS}


def check_chain(session: Session) -> ChainCheck:
    """Recompute every link; name the first entry that does not verify. A truncated tail
    leaves a shorter chain that still verifies: only a signed checkpoint of the head shows it."""
    prev = GENESIS
    n = 0
    rows = list(session.exec(select(AuditEntry).order_by(col(AuditEntry.seq))))
    vouchers = vouchers_of(rows)
    for row in rows:
        assert row.seq is not None  # a stored row always has one
        if row.prev_hash != prev:
            return ChainCheck(n, ChainBreak(row.seq, "audit.link_broken"))
        if entry_problem(prev, row, vouchers) is not None:
            return ChainCheck(n, ChainBreak(row.seq, "audit.entry_altered"))
        prev = row.hash
        n += 1
    return ChainCheck(n)


def verify_chain(session: Session) -> tuple[bool, int]:
    """(intact, entries checked); `check_chain` also says which entry broke and how."""
    check = check_chain(session)
    return check.intact, check.checked


class Erasure(SQLModel, table=True):
    """One erasure of a contact: who, when, why, how many rows of each table changed. It
    holds no personal data: the contact is named by the hash of its id."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime
    actor: str
    contact_hash: str = Field(index=True)
    reason: str = ""
    counts: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    audit_run_key: str  # the chain's `erase` entry that vouches for its tombstones
