"""Write signed checkpoints of the audit chain's head.

A checkpoint is written under the chain's write lock, so the head it signs is the head
(no append can slip in between the read and the insert)."""

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
    checkpoint_message,
    lock_chain,
)

log = logging.getLogger(__name__)


def last_checkpoint(session: Session) -> AuditCheckpoint | None:
    q = select(AuditCheckpoint).order_by(col(AuditCheckpoint.id).desc()).limit(1)
    return session.exec(q).first()


def checkpoint(engine: Engine, key: SigningKey, *, every: int = 1) -> AuditCheckpoint | None:
    """Sign the current head if at least `every` entries were appended since the last
    checkpoint (1: whenever the head moved). Returns the new checkpoint, or None."""
    with Session(engine, expire_on_commit=False) as session:
        lock_chain(session)
        head = session.exec(
            select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(1)
        ).first()
        last = last_checkpoint(session)
        if head is None or head.seq is None:
            session.rollback()
            return None
        if last is not None and head.seq - last.seq < every:
            session.rollback()
            return None
        entries = session.exec(select(func.count()).select_from(AuditEntry)).one()
        at = datetime.now(UTC)
        prev = sha256_hex(bytes.fromhex(last.signature)) if last else GENESIS
        fields = {
            "seq": head.seq,
            "head_hash": head.hash,
            "entries": int(entries),
            "at": at,
            "key_id": key.key_id,
            "prev": prev,
        }
        row = AuditCheckpoint(**fields, signature=key.sign(checkpoint_message(**fields)))
        session.add(row)
        session.commit()
        return row


async def run_checkpoints(
    engine: Engine, key: SigningKey, stop: asyncio.Event, *, every: int, interval_s: float = 60.0
) -> None:
    """Beside the worker: sign the head whenever `every` entries were appended since the
    last checkpoint (checked each `interval_s`), and once more on the way out."""

    async def step() -> None:
        await asyncio.to_thread(checkpoint, engine, key, every=every)

    await loops.every(interval_s, stop, step, what="audit checkpoint")
    await step()  # the head as the worker leaves it
