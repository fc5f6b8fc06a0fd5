"""A rollback's compensation is judged by the policy like any action: one that needs a
person's approval is refused with the roles it needs, never executed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from sqlmodel import Session, select

from autopilot.runtime.config import Settings
from autopilot.runtime.execution.rollback import rollback
from autopilot.runtime.services import Services, build_services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.audit import AuditEntry
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.outbox import CsmTask
from autopilot.runtime.store.tool_calls import ToolCallRecord

NOW = datetime(2026, 11, 25, 10, tzinfo=UTC)


def _executed_task(tmp_path: Path, *, arr: float) -> Services:
    """A store with one executed CSM task (reversible) on an account of `arr`."""
    svc = build_services(Settings(data_dir=tmp_path), clock=lambda: NOW)
    with transaction(svc.db) as s:
        s.add(
            Account(
                id="acc-big",
                name="Big Corp",
                segment="enterprise",
                region="eu",
                arr=arr,
                seats_purchased=500,
                seats_used=450,
                active_users_30d=400,
                logins_30d=9000,
                renewal_date=date(2027, 6, 1),
                owner_csm="demo:dana",
            )
        )
        s.add(
            ActionRecord(
                run_key="wf-big/1/0",
                workflow_id="wf-big",
                agent="adoption",
                account_id="acc-big",
                segment="enterprise",
                tool="create_csm_task",
                payload={},
                payload_hash="h",
                status="executed",
                created_at=NOW,
                updated_at=NOW,
            )
        )
        s.add(
            CsmTask(
                id="task_1",
                account_id="acc-big",
                assignee="demo:dana",
                title="Session",
                due=NOW,
                created_at=NOW,
            )
        )
        s.add(
            ToolCallRecord(
                idempotency_key="wf-big/1/0",
                tool="create_csm_task",
                args={},
                status="done",
                output={"id": "task_1", "undo": {"id": "task_1"}},
                started_at=NOW,
            )
        )
    return svc


async def test_a_compensation_that_needs_approval_is_refused_not_executed(tmp_path: Path) -> None:
    svc = _executed_task(tmp_path, arr=300_000)  # at or above the CSM approval line (250k)
    out = await rollback(svc, "wf-big", actor="demo:maria")
    (step,) = out["steps"]
    assert step["status"] == "needs_approval" and "csm" in step["roles"]
    assert out["undone"] == 0
    with Session(svc.db) as s:
        assert s.get(ToolCallRecord, "wf-big/1/0/compensate") is None  # nothing ran
        entries = s.exec(
            select(AuditEntry).where(AuditEntry.run_key == "wf-big/1/0/compensate")
        ).all()
    assert [e.decision["status"] for e in entries] == ["needs_approval"]


async def test_a_compensation_the_policy_allows_runs(tmp_path: Path) -> None:
    svc = _executed_task(tmp_path, arr=100_000)
    out = await rollback(svc, "wf-big", actor="demo:maria")
    (step,) = out["steps"]
    assert step["status"] == "compensated" and out["undone"] == 1, step
    with Session(svc.db) as s:
        task = s.get(CsmTask, "task_1")
    assert task is not None and task.status == "cancelled"
