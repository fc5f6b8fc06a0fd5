"""Roll back a run: the compensating tool of each executed action, newest first, each
through the policy gate and audited. An irreversible effect (a delivered email) is
reported as such; nothing pretends it away. A compensation that would need an
approval is refused (never executed): the rollback names the roles to ask."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlmodel import Session, col, select

from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.agents.specs import spec_hash
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.contracts.policy import ActorIn
from autopilot.runtime.contracts.tool import ToolCall
from autopilot.runtime.execution.executor import execute_once
from autopilot.runtime.policy.gate import gate_action
from autopilot.runtime.services import Services
from autopilot.runtime.store import audit
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.tools.registry import ToolContext, ToolError


class RollbackError(ValueError):
    pass


async def rollback(
    svc: Services, workflow_id: str, *, actor: str, dry_run: bool = False
) -> dict[str, Any]:
    with Session(svc.db) as session:
        actions = session.exec(
            select(ActionRecord)
            .where(ActionRecord.workflow_id == workflow_id, ActionRecord.status == "executed")
            .order_by(col(ActionRecord.updated_at).desc(), col(ActionRecord.run_key).desc())
        ).all()
        calls = {
            c.idempotency_key: c
            for c in session.exec(
                select(ToolCallRecord).where(
                    col(ToolCallRecord.idempotency_key).in_([a.run_key for a in actions])
                )
            )
        }
    if not actions:
        raise RollbackError(f"run {workflow_id} has no executed actions")
    steps: list[dict[str, Any]] = []
    for action in actions:
        tool = svc.tools.get(action.tool)
        call = calls.get(action.run_key)
        step: dict[str, Any] = {"action": action.run_key, "tool": action.tool}
        if tool.compensate is None:
            step["status"] = "irreversible" if tool.irreversible else "no_compensation"
            step["detail"] = (
                "the effect cannot be undone (it was delivered)"
                if tool.irreversible
                else "the tool declares no compensating tool"
            )
            steps.append(step)
            continue
        undo = (call.output if call else {}).get("undo")
        if not undo:
            steps.append(
                {
                    **step,
                    "status": "failed",
                    "detail": "the tool's result carries no undo arguments",
                }
            )
            continue
        step["compensate"] = tool.compensate
        steps.append(
            step
            | await _compensate(svc, action, tool.compensate, undo, actor=actor, dry_run=dry_run)
        )
    return {
        "workflow_id": workflow_id,
        "dry_run": dry_run,
        "steps": steps,
        "undone": sum(s["status"] in ("compensated", "would_compensate") for s in steps),
        "irreversible": sum(s["status"] == "irreversible" for s in steps),
    }


async def _compensate(
    svc: Services,
    action: ActionRecord,
    name: str,
    args: dict[str, Any],
    *,
    actor: str,
    dry_run: bool,
) -> dict[str, Any]:
    key = f"{action.run_key}/compensate"
    spec = svc.specs.get(action.agent)
    with Session(svc.db) as session:
        account = get_snapshot(session, account_id=action.account_id, today=svc.clock().date())
    if spec is None or account is None:
        return {"status": "failed", "detail": "the agent spec or the account is gone"}
    if dry_run:
        try:
            preview = await asyncio.to_thread(
                svc.tools.call,
                name,
                args,
                ToolContext(
                    idempotency_key=key,
                    dry_run=True,
                    smtp=svc.smtp,
                    db=svc.db,
                    settings=svc.settings,
                ),
            )
        except ToolError as err:
            return {"status": "failed", "detail": str(err)}
        return {"status": "would_compensate", "preview": preview}
    # The compensation is granted with the tool it undoes, and judged by the policy like any action.
    granted = spec.model_copy(update={"tools": [*spec.tools, name]})
    proposed = ProposedAction(
        tool=name,
        args=args,
        reason=f"rollback of {action.run_key} by {actor}",
        expected_cost=0.0,
        expected_uplift=0.0,
        category="operational",
    )
    decision = await gate_action(
        svc,
        run_key=key,
        action=proposed,
        account=account,
        spec=granted,
        actor=ActorIn(type="user", id=actor),
        pinned_bundle=None,
    )
    common = {
        "workflow_id": action.workflow_id,
        "run_key": key,
        "bundle_hash": decision.bundle_hash,
        "spec_hash": spec_hash(spec),
        "org_id": audit.org_of(svc.db, action.account_id),
    }

    def audited(outcome: dict[str, Any], input_hash: str) -> dict[str, Any]:
        step = AuditEvent(
            step="compensate", actor=actor, input_hash=input_hash, decision=outcome, **common
        )
        audit.append(svc.db, [step])
        return outcome

    if decision.allow and decision.require_approval:
        # A rollback is one person's command, not an approval: a compensation the policy
        # wants a person (or several) to approve is refused with the roles it needs.
        reasons = [f"{a.role}: {a.reason}" for a in decision.approval]
        return audited(
            {"status": "needs_approval", "roles": decision.roles, "reasons": reasons},
            decision.input_hash,
        )
    if not decision.allow:
        return audited(
            {"status": "denied", "codes": [v.code for v in decision.deny]}, decision.input_hash
        )
    try:
        # Tools block (SMTP, HTTP): off the event loop.
        result = await asyncio.to_thread(
            execute_once,
            svc.db,
            svc.tools,
            ToolCall(tool=name, args=args, idempotency_key=key, granted=[name]),
            svc.smtp,
            svc.settings,
        )
    except ToolError as err:
        audited({"status": "failed", "error": str(err)[:300]}, sha256_hex(args))
        return {"status": "failed", "detail": str(err)}
    audited({"status": "compensated", "tool": name, "output": result.output}, sha256_hex(args))
    return {"status": "compensated", "output": result.output}
