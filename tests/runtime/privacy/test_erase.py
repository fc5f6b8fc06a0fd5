"""Erasing a contact after a real run (Temporal dev server, regopy, SQLite, SMTP sink,
the CLI): their email and name are nowhere in the store, the audit chain still
verifies, and the erasure is itself in the chain. All or nothing."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, col, select

from autopilot.runtime.privacy.erase import ErasureError, erase_contact
from autopilot.runtime.store import audit
from autopilot.runtime.store.accounts import Contact
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.audit import AuditEntry, Erasure
from tests.conftest import Stack
from tests.runtime.audit.test_replay import approve_then_reject, cli


def where_found(db: Engine, needle: str) -> list[str]:
    """Every table.column whose text holds `needle` (case-insensitive), over every row."""
    found: list[str] = []
    with db.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)).mappings():
                for name, value in row.items():
                    text = value if isinstance(value, str) else json.dumps(value, default=str)
                    if needle.lower() in text.lower() or needle.lower() in str(value).lower():
                        found.append(f"{table.name}.{name}")
    return sorted(set(found))


def emailed_contact(stack: Stack, wf_id: str) -> Contact:
    with Session(stack.db) as s:
        recipient = s.exec(
            select(ActionRecord.recipient).where(
                ActionRecord.workflow_id == wf_id, col(ActionRecord.recipient).is_not(None)
            )
        ).first()
        assert recipient
        contact = s.exec(select(Contact).where(Contact.email == recipient)).one()
    return contact


async def test_an_erased_contact_is_nowhere_in_the_store_and_the_chain_verifies(
    stack: Stack,
) -> None:
    wf_id = await approve_then_reject(stack)
    contact = emailed_contact(stack, wf_id)
    before = where_found(stack.db, contact.email)
    # The run spread the address well beyond the contact row: the scan can see it.
    assert {"contact.email", "actionrecord.recipient", "auditentry.decision"} <= set(before)
    assert "receivedmail.body" in where_found(stack.db, contact.name)  # "Hi <name>, ..."

    out = cli(stack, "privacy", "erase", contact.id, "--reason", "GDPR art. 17", "--json")
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    assert result["ok"] and result["counts"]["auditentry"] >= 1

    assert where_found(stack.db, contact.email) == []
    # Seeded names repeat ("Champion of Hooli"): only other people's rows keep the name.
    with Session(stack.db) as s:
        namesakes = s.exec(select(Contact.id).where(Contact.name == contact.name)).all()
    assert where_found(stack.db, contact.name) == (["contact.name"] if namesakes else [])
    with Session(stack.db) as s:
        row = s.get(Contact, contact.id)
        assert row is not None and row.opted_out  # nobody contacts them again
        (erase,) = s.exec(select(AuditEntry).where(AuditEntry.step == "erase")).all()
        assert erase.run_key == result["audit_run_key"]
        assert contact.id not in json.dumps(erase.decision)  # only its hash
        assert s.exec(select(Erasure)).one().counts == result["counts"]

    verified = cli(stack, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["ok"] and report["erased"] == result["counts"]["auditentry"]
    assert report["verified"] == report["entries"]


async def test_an_erasure_that_fails_changes_nothing(stack: Stack) -> None:
    wf_id = await approve_then_reject(stack)
    contact = emailed_contact(stack, wf_id)
    before = where_found(stack.db, contact.email)
    # A stray chain entry already holds the key the erasure's own entry would take, so
    # its entry cannot be written: the scrubbing done before that must be undone.
    stray = audit.AuditEvent(
        workflow_id="privacy",
        run_key="privacy/erase/1",
        step="erase",
        actor="x",
        input_hash="",
        decision={},
        bundle_hash="",
        spec_hash="",
    )
    assert audit.append(stack.db, [stray]) == 1
    try:
        erase_contact(stack.db, contact.id, actor="dpo", reason="test")
    except ErasureError:
        pass
    else:
        raise AssertionError("the erasure should have failed")
    assert where_found(stack.db, contact.email) == before
    with Session(stack.db) as s:
        assert s.exec(select(Erasure)).all() == []
        row = s.get(Contact, contact.id)
        assert row is not None and row.email == contact.email


def test_an_unknown_contact_is_named(tmp_path: Any) -> None:
    from autopilot.runtime.store.db import make_engine

    db = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        erase_contact(db, "nobody", actor="dpo")
    except ErasureError as err:
        assert str(err).startswith("contact_id:")
    else:
        raise AssertionError("an unknown contact should be refused")
