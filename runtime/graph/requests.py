"""Build the approval request for a gated action (the approve node, and edits)."""

from __future__ import annotations

from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.approval import ApprovalRequest
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.contracts.policy import Decision


def approval_id_for(key: str) -> str:
    return "apr_" + sha256_hex(key)[:24]


def approval_request(
    *,
    approval_id: str,
    workflow_id: str,
    agent: str,
    account_id: str,
    bundle_hash: str,
    spec_hash: str,
    action: ProposedAction,
    decision: Decision,
    risk: float,
    timeout_hours: float,
    edited_from: str | None = None,
    run_key: str | None = None,
) -> ApprovalRequest:
    slas: dict[str, float] = {}
    for a in decision.approval:
        if a.sla_hours is not None:
            slas[a.role] = min(slas.get(a.role, a.sla_hours), a.sla_hours)
    escalate_to = {
        str(o["role"]): str(o["escalate_to"])
        for o in decision.obligations
        if o.get("type") == "approval_sla"
        and o.get("escalate_to")
        and o.get("escalate_to") != o.get("role")
    }
    return ApprovalRequest(
        approval_id=approval_id,
        workflow_id=workflow_id,
        agent=agent,
        account_id=account_id,
        action=action.model_dump(mode="json"),
        payload_hash=action.payload_hash,
        roles=decision.roles,
        reasons=[f"{a.role}: {a.reason}" for a in decision.approval],
        slas=slas,
        escalate_to=escalate_to,
        timeout_hours=timeout_hours,
        decision=decision.model_dump(mode="json"),
        risk=risk,
        bundle_hash=bundle_hash,
        spec_hash=spec_hash,
        edited_from=edited_from,
        run_key=run_key,
    )
