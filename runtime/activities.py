"""Plain activities of the agent workflow (graph nodes aside): the approval inbox rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import activity

from autopilot.runtime import services
from autopilot.runtime.contracts.approval import ApprovalDecision, ApprovalOutcome, ApprovalRequest
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.db import transaction


class ApprovalActivities:
    @activity.defn(name="open_approval")
    def open_approval(self, request: ApprovalRequest) -> None:
        """Put the request in the inbox (idempotent: a retry finds the row)."""
        svc = services.current()
        now = datetime.now(UTC)
        with transaction(svc.db) as session:
            if session.get(Approval, request.approval_id) is not None:
                return
            session.add(Approval(
                id=request.approval_id, workflow_id=request.workflow_id,
                run_key=request.approval_id, agent=request.agent, account_id=request.account_id,
                action=request.action, payload_hash=request.payload_hash, roles=request.roles,
                reasons=request.reasons, created_at=now,
                due_at=now + timedelta(hours=request.timeout_hours),
            ))

    @activity.defn(name="close_approval")
    def close_approval(self, decision: ApprovalDecision) -> ApprovalOutcome:
        """Record who decided and when; the first decision recorded stands."""
        svc = services.current()
        status = "approved" if decision.verdict == "approve" else "rejected"
        with transaction(svc.db) as session:
            row = session.get(Approval, decision.approval_id)
            if row is None:
                raise ValueError(f"no approval {decision.approval_id}")
            if row.status == "pending":
                row.status, row.decided_by = status, decision.actor
                row.decided_at = decision.decided_at or datetime.now(UTC)
                row.decision_reason = decision.reason
                session.add(row)
            return ApprovalOutcome(approval_id=row.id, status=row.status, actor=row.decided_by or decision.actor)
