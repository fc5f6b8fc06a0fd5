"""Write signed checkpoints of each audit chain's head.

A checkpoint is written under its chain's write lock, so the head it signs is the head
(no append can slip in between the read and the insert). Each organisation's chain gets
its own checkpoints, linked to each other; the legacy chain (entries written before
chains were per organisation) is signed like any other whenever its head moved."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime import loops
from autopilot.runtime.audit.keys import SigningKey
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.store.audit import (
    GENESIS,
    AuditCheckpoint,
    AuditEntry,
    Chain,
    chains_of,
    checkpoint_message,
    in_chain,
    lock_chains,
)

log = logging.getLogger(__name__)


def last_checkpoint(session: Session, chain: Chain) -> AuditCheckpoint | None:
    org = col(AuditCheckpoint.org_id)
    q = (
        select(AuditCheckpoint)
        .where(org.is_(None) if chain is None else org == chain)
        .order_by(col(AuditCheckpoint.id).desc())
        .limit(1)
    )
    return session.exec(q).first()


def checkpoint_chain(
    engine: Engine, key: SigningKey, chain: Chain, *, every: int = 1
) -> AuditCheckpoint | None:
    """Sign `chain`'s head if at least `every` entries were appended to it since its last
    checkpoint (1: whenever the head moved). Returns the new checkpoint, or None."""
    with Session(engine, expire_on_commit=False) as session:
        lock_chains(session, [chain])
        rows = in_chain(chain)
        head = session.exec(
            select(AuditEntry).where(rows).order_by(col(AuditEntry.seq).desc()).limit(1)
        ).first()
        last = last_checkpoint(session, chain)
        if head is None or head.seq is None:
            session.rollback()
            return None
        entries = int(session.exec(select(func.count()).select_from(AuditEntry).where(rows)).one())
        if last is not None and (head.position == last.seq or entries - last.entries < every):
            session.rollback()
            return None
        at = datetime.now(UTC)
        prev = sha256_hex(bytes.fromhex(last.signature)) if last else GENESIS
        fields = {
            "org_id": chain,
            "seq": head.position,
            "head_hash": head.hash,
            "entries": entries,
            "at": at,
            "key_id": key.key_id,
            "prev": prev,
        }
        row = AuditCheckpoint(**fields, signature=key.sign(checkpoint_message(**fields)))
        session.add(row)
        session.commit()
        return row


def checkpoint(
    engine: Engine, key: SigningKey, *, every: int = 1, org_id: str | None = None
) -> list[AuditCheckpoint]:
    """Sign the head of every chain (or only `org_id`'s) that moved by `every` entries
    since its last checkpoint. Returns the new checkpoints."""
    if org_id is None:
        with Session(engine) as session:
            chains = chains_of(session)
    else:
        chains = [org_id]
    written = [checkpoint_chain(engine, key, c, every=every) for c in chains]
    return [cp for cp in written if cp is not None]


async def run_checkpoints(
    engine: Engine, key: SigningKey, stop: asyncio.Event, *, every: int, interval_s: float = 60.0
) -> None:
    """Beside the worker: sign each chain's head whenever `every` entries were appended to
    it since its last checkpoint (checked each `interval_s`), and once more on the way out."""

    async def step() -> None:
        await asyncio.to_thread(checkpoint, engine, key, every=every)

    await loops.every(interval_s, stop, step, what="audit checkpoint")
    await step()  # the heads as the worker leaves them
