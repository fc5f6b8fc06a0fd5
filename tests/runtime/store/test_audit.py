from __future__ import annotations

from pathlib import Path

from sqlmodel import Session, select

from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.store import audit
from autopilot.runtime.store.audit import AuditEntry, verify_chain
from autopilot.runtime.store.db import make_engine


def event(step: str, run_key: str = "wf/1/0") -> AuditEvent:
    return AuditEvent(workflow_id="wf", run_key=run_key, step=step, actor="agent:x", input_hash="a" * 64,
                      decision={"ok": True}, bundle_hash="b" * 64, spec_hash="c" * 64)


def test_chain_is_append_only_idempotent_and_detects_tampering(tmp_path: Path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    assert audit.append(db, [event("plan"), event("gate")]) == 2
    assert audit.append(db, [event("gate"), event("execute")]) == 1  # a retried step is not written twice
    with Session(db) as s:
        assert verify_chain(s) == (True, 3)
        row = s.exec(select(AuditEntry).where(AuditEntry.step == "gate")).one()
        row.actor = "someone-else"
        s.add(row)
        s.commit()
    with Session(db) as s:
        intact, checked = verify_chain(s)
        assert not intact and checked == 1
