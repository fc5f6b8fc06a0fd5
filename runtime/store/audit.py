"""Append-only, hash-chained audit log, one chain per organisation, and the signed
checkpoints of each chain's head.

An organisation's entries form a chain of their own: `org_seq` numbers them 1, 2, … and
`prev_hash` links each to the same organisation's entry before it (the first to
GENESIS). The organisation and the number are hashed with the entry, so an entry cannot
be moved to another chain or renumbered unseen. Appends are serialised per chain by the
database, not by the process: on SQLite `append` takes the write lock before it reads
the head (BEGIN IMMEDIATE), on Postgres an advisory lock of the chain; a writer that
skipped the lock still cannot fork a chain, since (org_id, org_seq) and (org_id,
prev_hash) are unique.

Entries written before per-organisation chains (`org_id` NULL, `org_seq` NULL) are the
legacy chain: one chain over the whole store in `seq` order, verified exactly as they
were hashed (no organisation in the hash). The migration recomputed nothing, so their
tamper evidence stands. It takes no new actions; only the erase/retention entries that
vouch for tombstones of its own entries are appended to it: a privacy entry always goes
into the chain of the entries it tombstones, so every chain verifies on its own.

An entry's hash covers a digest of its `decision` payload (`decision_hash`), not the
payload itself: erasing a person (or a payload past retention) replaces the payload with
a tombstone and keeps the digest, so the chain still verifies. A tombstone must be
vouched for by a later `erase`/`retention` entry of its chain (which names the entries it
tombstoned and, for an erasure, each tombstone's digest); a payload changed without one,
or a tombstone that entry does not vouch for, is an edit. Entries written before the
digest existed (`decision_hash` NULL) are hashed over their whole payload, as before."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import JSON, Column, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.store.accounts import Account

GENESIS = "0" * 64
# The organisation of an account the store does not know (Account's default too).
DEFAULT_ORG = "demo"
Chain = str | None  # an organisation's chain; None: the legacy chain


class AuditEntry(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("run_key", "step", name="uq_audit_step"),
        # One successor per entry and one entry per number: a chain cannot fork.
        UniqueConstraint("org_id", "org_seq", name="uq_audit_org_seq"),
        UniqueConstraint("org_id", "prev_hash", name="uq_audit_org_prev"),
    )

    seq: int | None = Field(default=None, primary_key=True)
    at: datetime
    # The chain: None for the legacy chain (entries written before per-organisation chains).
    org_id: str | None = None
    org_seq: int | None = None  # 1, 2, … within the organisation's chain
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

    @property
    def position(self) -> int:
        """The entry's number in its chain: `org_seq`, or `seq` in the legacy chain."""
        return (self.org_seq if self.org_id is not None else self.seq) or 0


# The steps that tombstone other entries' payloads; they carry no personal data and are
# themselves never tombstoned (they vouch for the tombstones).
PRIVACY_STEPS = frozenset({"erase", "retention"})
_ORG_FIELDS = frozenset({"org_id", "org_seq"})


def decision_digest(decision: dict[str, Any]) -> str:
    return sha256_hex(decision)


def chain_name(chain: Chain) -> str:
    return "legacy chain" if chain is None else f"org {chain}"


def org_of(engine: Engine, account_id: str) -> str:
    """The organisation whose chain an account's entries go into."""
    with engine.connect() as conn:
        org = conn.execute(_ORG_OF, {"account_id": account_id}).scalar()
    return org or DEFAULT_ORG


_ORG_OF = sa.select(col(Account.org_id)).where(col(Account.id) == sa.bindparam("account_id"))


def _legacy_hash(prev_hash: str, event: AuditEvent, at: datetime) -> str:
    """An entry written before digests and organisations: over its whole payload."""
    fields = event.model_dump(mode="json", exclude=set(_ORG_FIELDS))
    return sha256_hex({"prev": prev_hash, "at": at.isoformat(), **fields})


def _digest_hash(prev_hash: str, at: datetime, decision_hash: str, fields: dict[str, Any]) -> str:
    return sha256_hex(
        {"prev": prev_hash, "at": at.isoformat(), "decision_hash": decision_hash, **fields}
    )


def _entry_hash(prev_hash: str, event: AuditEvent, at: datetime, org_seq: int | None) -> str:
    """The hash of a new entry: in an organisation's chain it covers the organisation and
    the number; in the legacy chain (org_seq None) neither, as its entries always were."""
    fields = event.model_dump(mode="json", exclude={"decision"})
    if org_seq is None:
        fields.pop("org_id")
    else:
        fields["org_seq"] = org_seq
    return _digest_hash(prev_hash, at, decision_digest(event.decision), fields)


def _row_hash(prev_hash: str, row: AuditEntry) -> str:
    """The hash `row` must have: over its decision's digest, recomputed from the payload
    unless it is a tombstone (then the stored digest of the erased payload); for an entry
    written before digests, over its whole payload."""
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)  # SQLite hands it back naive
    exclude = {"seq", "at", "prev_hash", "hash", "decision_hash"}
    if row.org_id is None:
        exclude |= _ORG_FIELDS  # the legacy chain: hashed before organisations existed
    fields = row.model_dump(exclude=exclude)
    if row.decision_hash is None:
        return _legacy_hash(prev_hash, AuditEvent(**fields), at)
    decision = fields.pop("decision")
    digest = row.decision_hash if tombstone_mark(decision) else decision_digest(decision)
    return _digest_hash(prev_hash, at, digest, fields)


def in_chain(chain: Chain) -> sa.ColumnElement[bool]:
    column = col(AuditEntry.org_id)
    return column.is_(None) if chain is None else column == chain


def _head(session: Session, chain: Chain) -> tuple[str, int]:
    """The chain's head as (hash, position); (GENESIS, 0) for an empty chain. Two columns,
    not the entry: its payload can be large and is not needed."""
    if chain is None:
        row = session.connection().execute(_LEGACY_HEAD).first()
    else:
        row = session.connection().execute(_ORG_HEAD, {"chain": chain}).first()
    return (row[0], row[1] or 0) if row is not None else (GENESIS, 0)


# Built once: every recorded action reads a head and its recorded steps.
_LEGACY_HEAD = (
    sa.select(col(AuditEntry.hash), col(AuditEntry.seq))
    .where(col(AuditEntry.org_id).is_(None))
    .order_by(col(AuditEntry.seq).desc())
    .limit(1)
)
_ORG_HEAD = (
    sa.select(col(AuditEntry.hash), col(AuditEntry.org_seq))
    .where(col(AuditEntry.org_id) == sa.bindparam("chain"))
    .order_by(col(AuditEntry.org_seq).desc())
    .limit(1)
)
_RECORDED = sa.select(col(AuditEntry.run_key), col(AuditEntry.step)).where(
    sa.tuple_(col(AuditEntry.run_key), col(AuditEntry.step)).in_(
        sa.bindparam("wanted", expanding=True)
    )
)


def append(engine: Engine, events: list[AuditEvent]) -> int:
    """Append events (each to its organisation's chain) in one transaction; an
    already-recorded (run_key, step) is skipped, so a retried activity never writes a
    step twice. Returns how many were written."""
    with Session(engine) as session:
        lock_chains(session, {ev.org_id for ev in events})
        written = append_locked(session, events)
        session.commit()
    return written


def append_locked(session: Session, events: list[AuditEvent], *, legacy: bool = False) -> int:
    """`append` inside the caller's transaction, which already holds `lock_chains` of the
    chains written: an erasure writes its own entry in the same transaction as the
    tombstones it vouches for. `legacy`: into the legacy chain (privacy entries only,
    vouching for tombstones of legacy entries)."""
    assert not legacy or all(ev.step in PRIVACY_STEPS for ev in events)
    if not events:
        return 0
    # One read of the steps already recorded, one of each chain's head; then each new
    # entry links to the one before it in memory (the lock keeps the heads current).
    wanted = sorted({(ev.run_key, ev.step) for ev in events})
    done = {tuple(r) for r in session.connection().execute(_RECORDED, {"wanted": wanted})}
    heads: dict[Chain, tuple[str, int]] = {}
    rows: list[dict[str, Any]] = []
    for ev in events:
        if (ev.run_key, ev.step) in done:
            continue
        done.add((ev.run_key, ev.step))
        chain = None if legacy else ev.org_id
        prev, position = heads[chain] if chain in heads else _head(session, chain)
        org_seq = None if chain is None else position + 1
        at = datetime.now(UTC)
        row = AuditEntry(
            **ev.model_dump(exclude={"org_id"}),
            org_id=chain,
            org_seq=org_seq,
            at=at,
            prev_hash=prev,
            hash=_entry_hash(prev, ev, at, org_seq),
            decision_hash=decision_digest(ev.decision),
        )
        rows.append(row.model_dump(exclude={"seq"}))
        heads[chain] = (row.hash, org_seq or 0)  # (the legacy chain needs no number)
    session.flush()
    if rows:  # one INSERT for them all (in order: the legacy chain is ordered by `seq`)
        session.connection().execute(sa.insert(AuditEntry.__table__), rows)  # pyright: ignore[reportAttributeAccessIssue]
    return len(rows)


def _lock_key(chain: Chain) -> int:
    name = "autopilot.audit.legacy" if chain is None else f"autopilot.audit.org:{chain}"
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def lock_chains(session: Session, chains: Iterable[Chain]) -> None:
    """Take the write lock of these chains for this transaction, before their heads are
    read: the read-head/insert pair is then atomic across threads and processes. (A
    deferred SQLite transaction would read the head in one snapshot and insert in a
    later one: a fork.) SQLite has one write lock; Postgres an advisory lock per chain,
    taken in one order so two transactions locking several chains cannot deadlock."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        for key in sorted({_lock_key(c) for c in chains}):
            session.connection().execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def chains_of(session: Session) -> list[Chain]:
    """Every chain in the store, the legacy one first: those with entries, and those with
    only checkpoints left (every entry cut)."""
    found = set(session.exec(select(AuditEntry.org_id).distinct()).all())
    found |= set(session.exec(select(AuditCheckpoint.org_id).distinct()).all())
    return ([None] if None in found else []) + sorted(c for c in found if c is not None)


def chain_rows(session: Session, chain: Chain) -> list[AuditEntry]:
    """A chain's entries in the order they were appended."""
    q = select(AuditEntry).where(in_chain(chain)).order_by(col(AuditEntry.seq))
    return list(session.exec(q))


class AuditCheckpoint(SQLModel, table=True):
    """A signed statement of one chain's head: "entry `seq` of this chain has hash
    `head_hash` and the chain holds `entries` entries up to it". The chain alone cannot
    show that its newest entries were cut, or that it was rewritten from some entry on
    with recomputed hashes; a checkpoint signed with a key the store does not hold can.
    A chain's checkpoints link to each other (`prev`: the hash of the previous
    checkpoint's signature)."""

    id: int | None = Field(default=None, primary_key=True)
    org_id: str | None = Field(default=None, index=True)  # None: the legacy chain
    seq: int = Field(index=True)  # the head's number in its chain (AuditEntry.position)
    head_hash: str
    entries: int
    at: datetime
    key_id: str
    prev: str
    signature: str  # hex Ed25519 over `checkpoint_message(...)`


def checkpoint_message(
    *,
    org_id: str | None = None,
    seq: int,
    head_hash: str,
    entries: int,
    at: datetime,
    key_id: str,
    prev: str,
) -> bytes:
    """The exact bytes a checkpoint's signature covers (canonical JSON). An organisation's
    checkpoint names it, so it cannot vouch for another chain; a legacy one (org_id None)
    is signed as it always was."""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite hands it back naive
    body: dict[str, Any] = {
        "seq": seq,
        "head_hash": head_hash,
        "entries": entries,
        "at": at.isoformat(),
        "key_id": key_id,
        "prev": prev,
    }
    if org_id is not None:
        body["org_id"] = org_id
    return sha256_hex(body).encode()


@dataclass(frozen=True)
class ChainBreak:
    """The first entry that does not verify (`seq`: its number in its chain).
    `audit.link_broken`: its prev_hash is not the hash of the entry before it (an entry
    was removed, reordered or re-hashed); `audit.entry_altered`: its hash does not cover
    its own content and link."""

    seq: int
    code: Literal["audit.link_broken", "audit.entry_altered"]
    org_id: str | None = None  # the chain (None: the legacy chain)


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
    vouching entry records it, so a tombstone edited afterwards is named. A legacy
    entry's is taken as it was before organisations existed."""
    at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    exclude = {"seq", "at"} | (set(_ORG_FIELDS) if row.org_id is None else set())
    return sha256_hex({**row.model_dump(mode="json", exclude=exclude), "at": at.isoformat()})


def entry_problem(prev: str, row: AuditEntry, vouchers: dict[str, AuditEntry]) -> str | None:
    """Why `row` (linked to `prev`) does not verify, or None. `vouchers`: its chain's
    erase/retention entries by run_key."""
    assert row.seq is not None  # a stored row always has one
    n = row.position
    mark = tombstone_mark(row.decision)
    if mark is not None:
        owner = vouchers.get(str(mark.get("ref")))
        if owner is None:
            return f"entry {n} holds a tombstone no erasure vouches for"
        sealed = (owner.decision.get("tombstones") or {}).get(str(row.seq))
        if sealed != sealed_digest(row):
            return f"entry {n} was edited after entry {owner.position} tombstoned it"
        if row.decision_hash is None:  # written before digests: the seal is all there is
            return None
    if row.hash != _row_hash(prev, row):
        return f"entry {n} was edited: its hash does not cover its content"
    return None


def vouchers_of(rows: list[AuditEntry]) -> dict[str, AuditEntry]:
    return {r.run_key: r for r in rows if r.step in PRIVACY_STEPS}


def check_chain(session: Session, chains: Iterable[Chain] | None = None) -> ChainCheck:
    """Recompute every link of these chains (default: every chain); name the first entry
    that does not verify. A truncated tail leaves a shorter chain that still verifies:
    only a signed checkpoint of the head shows it."""
    n = 0
    for chain in chains_of(session) if chains is None else chains:
        prev = GENESIS
        rows = chain_rows(session, chain)
        vouchers = vouchers_of(rows)
        for row in rows:
            if row.prev_hash != prev:
                return ChainCheck(n, ChainBreak(row.position, "audit.link_broken", chain))
            if entry_problem(prev, row, vouchers) is not None:
                return ChainCheck(n, ChainBreak(row.position, "audit.entry_altered", chain))
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
