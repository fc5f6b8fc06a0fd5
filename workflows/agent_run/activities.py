"""Plain activities of the agent workflow (graph nodes aside): the inbox's rows,
votes, escalations and the re-gating of edited actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autopilot.runtime import services
from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.agents.planner import apply_edit
from autopilot.runtime.agents.specs import spec_hash
from autopilot.runtime.approvals.notify import notify_escalation
from autopilot.runtime.approvals.votes import NoApproval, store_vote
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.approval import (
    ApprovalEdit,
    ApprovalOutcome,
    ApprovalRequest,
    ApprovalVote,
)
from autopilot.runtime.contracts.policy import ActorIn, Decision, RequiredApproval
from autopilot.runtime.graph.requests import approval_id_for, approval_request
from autopilot.runtime.policy.gate import Reservation, gate_action
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.db import transaction
from autopilot.tools.registry import ToolError


class CloseInput(BaseModel):
    approval_id: str
    status: str
    actor: str
    reason: str = ""
    at: datetime


class EscalateInput(BaseModel):
    approval_id: str
    role: str
    to: str | None


class EditInput(BaseModel):
    request: ApprovalRequest
    edit: ApprovalEdit


class EditResult(BaseModel):
    action: dict[str, Any]
    payload_hash: str
    decision: dict[str, Any]
    codes: list[str] = []
    request: ApprovalRequest | None = None  # None: the edited action is denied


def _utc(at: datetime | None) -> datetime:
    at = at or datetime.now(UTC)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class ApprovalActivities:
    @activity.defn(name="open_approval")
    def open_approval(self, request: ApprovalRequest) -> str | None:
        """Put the request in the inbox (idempotent: a retry finds the row). Returns who
        stopped the action if it was preempted or blocked before its item opened: then
        no item opens."""
        svc = services.current()
        now = svc.clock()
        with transaction(svc.db) as session:
            held = session.get(ActionRecord, request.run_key) if request.run_key else None
            if held is not None and held.status in ("preempted", "blocked"):
                return held.rejection_reason or held.status
            if session.get(Approval, request.approval_id) is not None:
                return None
            account = session.get(Account, request.account_id)
            session.add(
                Approval(
                    id=request.approval_id,
                    org_id=account.org_id if account else "demo",
                    workflow_id=request.workflow_id,
                    # The action's key (an edited item keeps it), so that an action's
                    # approvals are found from it; requests without one keep their own id.
                    run_key=request.run_key or request.approval_id,
                    agent=request.agent,
                    account_id=request.account_id,
                    segment=account.segment if account else "",
                    tool=request.action.get("tool", ""),
                    action=request.action,
                    payload_hash=request.payload_hash,
                    value=float(request.action.get("expected_cost", 0.0)),
                    risk=request.risk,
                    roles=request.roles,
                    deciders={r: [r] for r in request.roles},
                    reasons=request.reasons,
                    decision=request.decision,
                    created_at=now,
                    due_at=now + timedelta(hours=request.timeout_hours),
                    edited_from=request.edited_from,
                )
            )
            if request.edited_from:
                old = session.get(Approval, request.edited_from)
                if old is not None and old.status == "pending":
                    old.status = "superseded"
                    session.add(old)
        return None

    @activity.defn(name="record_vote")
    def record_vote(self, vote: ApprovalVote) -> ApprovalOutcome:
        """Store one role's verdict: a vote that does not decide its item yet (the one
        that decides is stored by the run's next step). Runs from before that store
        every vote here."""
        with transaction(services.current().db) as session:
            try:
                return store_vote(session.connection(), vote)
            except NoApproval as err:
                raise ApplicationError(str(err), non_retryable=True) from err

    @activity.defn(name="close_approval")
    def close_approval(self, close: CloseInput) -> None:
        svc = services.current()
        with transaction(svc.db) as session:
            row = session.get(Approval, close.approval_id)
            if row is not None and row.status == "pending":
                row.status, row.decided_by, row.decided_at = (
                    close.status,
                    close.actor,
                    _utc(close.at),
                )
                row.decision_reason = close.reason
                session.add(row)

    @activity.defn(name="escalate_approval")
    def escalate(self, esc: EscalateInput) -> None:
        """Past a role's SLA: the next role may decide in its place, and hears about it."""
        svc = services.current()
        with transaction(svc.db) as session:
            row = session.get(Approval, esc.approval_id)
            if row is None or row.status != "pending":
                return
            deciders = dict(row.deciders)
            if esc.to and esc.to not in deciders.get(esc.role, []):
                deciders[esc.role] = [*deciders.get(esc.role, [esc.role]), esc.to]
                row.deciders = deciders
                session.add(row)
        if esc.to:
            notify_escalation(svc, approval_id=esc.approval_id, role=esc.role, to=esc.to)

    @activity.defn(name="regate_edit")
    async def regate_edit(self, inp: EditInput) -> EditResult:
        """Apply the edit (only fields the tool's schema allows) and gate it again."""
        svc = services.current()
        req, edit = inp.request, inp.edit
        spec = svc.specs.get(req.agent)
        if spec is None or spec_hash(spec) != req.spec_hash:
            raise ApplicationError(
                "the agent spec changed since this run started", non_retryable=True
            )
        with transaction(svc.db) as session:
            account = get_snapshot(session, account_id=req.account_id, today=svc.clock().date())
        if account is None:
            raise ApplicationError(f"unknown account {req.account_id}", non_retryable=True)
        try:
            action = apply_edit(
                svc.tools, ProposedAction.model_validate(req.action), edit.args, account
            )
        except (ToolError, ValueError) as err:
            raise ApplicationError(
                f"edit refused: {err}", type="EditInvalid", non_retryable=True
            ) from err
        edit_key = f"{req.approval_id}/edit/{action.payload_hash[:12]}"
        # The edited action replaces the original's reservation in the ledger.
        reserve = (
            Reservation(key=req.run_key, workflow_id=req.workflow_id, agent=req.agent)
            if req.run_key
            else None
        )
        decision = await gate_action(
            svc,
            run_key=edit_key,
            action=action,
            account=account,
            spec=spec,
            actor=ActorIn(type="user", id=edit.actor),
            pinned_bundle=req.bundle_hash,
            reserve=reserve,
        )
        result = EditResult(
            action=action.model_dump(mode="json"),
            payload_hash=action.payload_hash,
            decision=decision.model_dump(mode="json"),
            codes=[v.code for v in decision.deny],
        )
        if not decision.allow:
            return result
        result.request = approval_request(
            approval_id=approval_id_for(edit_key),
            workflow_id=req.workflow_id,
            agent=req.agent,
            account_id=req.account_id,
            bundle_hash=req.bundle_hash,
            spec_hash=req.spec_hash,
            action=action,
            decision=_needs_a_human(decision),
            risk=req.risk,
            timeout_hours=req.timeout_hours,
            edited_from=req.approval_id,
            run_key=req.run_key,
        )
        return result


def _needs_a_human(decision: Decision) -> Decision:
    """An edited action runs only with a human's approval, even if the gate would let
    it run on its own: the edit itself is not an approval."""
    if decision.approval:
        return decision
    return decision.model_copy(
        update={
            "require_approval": True,
            "approval": [
                RequiredApproval(
                    role="csm",
                    reason="a person edited the action: confirm the edited version",
                    sla_hours=24,
                )
            ],
        }
    )
