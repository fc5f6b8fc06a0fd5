"""The audit log is hash-chained: each entry's hash covers its content and the hash of the
entry before it. Every tampering below is done directly in the database, as someone with
write access to the store (and knowledge of the hash function) would."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.store import audit
from autopilot.runtime.store.audit import (
    AuditEntry,
    ChainBreak,
    ChainCheck,
    check_chain,
    verify_chain,
)
from autopilot.runtime.store.db import make_engine

ORG = "demo"  # the events' organisation (AuditEvent's default): its chain is checked


def event(step: str) -> AuditEvent:
    return AuditEvent(workflow_id="wf", run_key="wf/1/0", step=step, actor="agent:x",
                      input_hash="a" * 64, decision={"ok": True}, bundle_hash="b" * 64,
                      spec_hash="c" * 64)


def chain_of_four(database_url: str) -> tuple[Engine, list[int]]:
    db = make_engine(database_url)
    assert audit.append(db, [event("plan"), event("gate"), event("execute"), event("record")]) == 4
    return db, [r.seq for r in rows(db) if r.seq is not None]


def rows(db: Engine) -> list[AuditEntry]:
    with Session(db) as s:
        return list(s.exec(select(AuditEntry).order_by(col(AuditEntry.seq))))


def check(db: Engine) -> ChainCheck:
    with Session(db) as s:
        return check_chain(s)


def edit(db: Engine, seq: int, *, rehash: bool = False, **fields: Any) -> None:
    """Change an entry; with `rehash`, recompute its own hash the way `append` does."""
    with Session(db) as s:
        row = s.exec(select(AuditEntry).where(AuditEntry.seq == seq)).one()
        for name, value in fields.items():
            setattr(row, name, value)
        if rehash:
            row.hash = audit._row_hash(row.prev_hash, row)
        s.add(row)
        s.commit()


def hash_of(db: Engine, seq: int) -> str:
    with Session(db) as s:
        return s.exec(select(AuditEntry.hash).where(AuditEntry.seq == seq)).one()


def relink(db: Engine, seq: int, to: int) -> None:
    """Point entry `seq`'s prev_hash at entry `to`, hiding a gap in the links."""
    edit(db, seq, prev_hash=hash_of(db, to))


def test_a_retried_step_is_not_written_twice(database_url: str) -> None:
    db = make_engine(database_url)
    assert audit.append(db, [event("plan"), event("gate")]) == 2
    assert audit.append(db, [event("gate"), event("execute")]) == 1
    assert [e.step for e in rows(db)] == ["plan", "gate", "execute"]
    assert check(db) == ChainCheck(checked=3)


def test_an_untouched_chain_verifies(database_url: str) -> None:
    db, _ = chain_of_four(database_url)
    assert check(db) == ChainCheck(checked=4) and check(db).intact
    with Session(db) as s:
        assert verify_chain(s) == (True, 4)


@pytest.mark.parametrize("field, value", [
    ("actor", "someone-else"),
    ("step", "approve"),
    ("decision", {"ok": False}),
    ("input_hash", "d" * 64),
    ("bundle_hash", "d" * 64),
    ("spec_hash", "d" * 64),
    ("hash", "e" * 64),
])
def test_editing_an_entry_is_detected_at_that_entry(
    database_url: str, field: str, value: Any
) -> None:
    db, (_, second, *_) = chain_of_four(database_url)
    edit(db, second, **{field: value})
    assert check(db) == ChainCheck(checked=1, broken=ChainBreak(second, "audit.entry_altered", ORG))
    with Session(db) as s:
        assert verify_chain(s) == (False, 1)


def test_moving_an_entry_in_time_is_detected_at_that_entry(database_url: str) -> None:
    db, (_, second, *_) = chain_of_four(database_url)
    with Session(db) as s:
        at = s.exec(select(AuditEntry.at).where(AuditEntry.seq == second)).one()
    edit(db, second, at=at - timedelta(hours=1))
    assert check(db).broken == ChainBreak(second, "audit.entry_altered", ORG)


def test_an_edited_entry_with_a_recomputed_hash_is_detected_at_the_next_entry(
    database_url: str,
) -> None:
    db, (_, second, third, _) = chain_of_four(database_url)
    edit(db, second, rehash=True, decision={"ok": False})
    assert check(db) == ChainCheck(checked=2, broken=ChainBreak(third, "audit.link_broken", ORG))
    # Pointing the next entry at the new hash does not help: its own hash covers the old one.
    relink(db, third, to=second)
    assert check(db) == ChainCheck(checked=2, broken=ChainBreak(third, "audit.entry_altered", ORG))


def test_deleting_a_middle_entry_is_detected(database_url: str) -> None:
    db, (first, second, third, _) = chain_of_four(database_url)
    with Session(db) as s:
        s.connection().execute(delete(AuditEntry).where(col(AuditEntry.seq) == second))
        s.commit()
    assert check(db) == ChainCheck(checked=1, broken=ChainBreak(third, "audit.link_broken", ORG))
    relink(db, third, to=first)
    assert check(db) == ChainCheck(checked=1, broken=ChainBreak(third, "audit.entry_altered", ORG))


def test_swapping_two_entries_is_detected(database_url: str) -> None:
    db, (first, second, third, fourth) = chain_of_four(database_url)
    with Session(db) as s:
        for old, new in ((second, -1), (third, second), (-1, third)):
            moved = update(AuditEntry).where(col(AuditEntry.seq) == old).values(seq=new)
            s.connection().execute(moved)
        s.commit()
    assert [e.step for e in rows(db)] == ["plan", "execute", "gate", "record"]
    # Named by its number in the organisation's chain: entry 3 (execute) is stored second.
    assert check(db) == ChainCheck(checked=1, broken=ChainBreak(third, "audit.link_broken", ORG))
    # Rewriting every link into the new order still leaves the moved entries' hashes wrong.
    # (No two entries of a chain may share a parent: a link is freed before it is reused.)
    edit(db, second, prev_hash="f" * 64)
    relink(db, fourth, to=third)
    relink(db, third, to=second)
    relink(db, second, to=first)
    assert check(db) == ChainCheck(checked=1, broken=ChainBreak(third, "audit.entry_altered", ORG))


def test_truncating_the_tail_is_not_detected_by_the_chain_alone(database_url: str) -> None:
    db, (*_, last) = chain_of_four(database_url)
    with Session(db) as s:
        s.connection().execute(delete(AuditEntry).where(col(AuditEntry.seq) == last))
        s.commit()
    # A known gap: a shorter prefix of a valid chain is a valid chain. Nothing here holds the
    # head, so this verifies as intact; signed checkpoints of the head (governance work) close it.
    assert check(db) == ChainCheck(checked=3)
