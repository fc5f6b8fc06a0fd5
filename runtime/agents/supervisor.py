"""The account supervisor: agents working on one account share its contacts and its
budget, and a priority (the spec's `priority`: rescue > renewal > expansion > adoption
by default) settles who gets them.

It lives in the gate, inside the ledger transaction every reservation already goes
through, rather than in a workflow per account: the reservation's optimistic version
check is what closes the race between two agents, so the settlement is taken on the
same rows in the same commit — no second copy of the account's state to keep in step,
and no extra round trip per action. A higher-priority action does not see the
reservations of lower-priority actions still in flight (allowed or awaiting approval);
when it needs their contact or their budget, they are preempted: their reservation is
released, their inbox item closed and the run told; nothing of theirs has been sent.
A lower- or equal-priority action yields to what is already held (the policy's
cool-down and budget deny it). Either way the conflict is recorded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as core_select
from sqlmodel import Session, select

from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.policy import Decision, RequiredApproval, Violation
from autopilot.runtime.ledger.spend import HELD_NOW, moments
from autopilot.runtime.store.actions import ActionRecord, SupervisorConflict
from autopilot.runtime.store.approvals import Approval

CONTACT_CODES = {"contact.cooldown"}
BUDGET_CODES = {"budget.account_exceeded", "budget.segment_exceeded"}
# Caps that reservations in flight also fill (discounts, high-touch contacts, the agent's own).
HELD_CODES = {
    "discount.above_cap",
    "discount.margin_floor",
    "contact.high_touch_cap",
    "agent.budget",
}
PREEMPTED = "preempted"


@dataclass(frozen=True)
class Contender:
    key: str
    agent: str
    priority: int
    recipient: str | None
    cost: float
    status: str
    workflow_id: str


def contenders(
    session: Session,
    *,
    account_id: str,
    key: str,
    agent: str,
    now: datetime,
    priorities: dict[str, int],
) -> list[Contender]:
    """Other agents' actions in flight on the account (their reservations hold)."""
    params = {**moments(now)[1], "account_id": account_id, "agent": agent, "key": key}
    rows = session.connection().execute(_CONTENDERS, params).all()
    return [
        Contender(
            key=r.run_key,
            agent=r.agent,
            priority=priorities.get(r.agent, 0),
            recipient=r.recipient,
            cost=r.expected_cost,
            status=r.status,
            workflow_id=r.workflow_id,
        )
        for r in rows
    ]


_A: Any = ActionRecord.__table__.c  # pyright: ignore[reportAttributeAccessIssue]
_CONTENDERS = core_select(  # built once: every gate reads it
    _A.run_key, _A.agent, _A.recipient, _A.expected_cost, _A.status, _A.workflow_id
).where(
    _A.account_id == bindparam("account_id"),
    _A.agent != bindparam("agent"),
    _A.run_key != bindparam("key"),
    HELD_NOW,
)


def yields_to_priority(decision: Decision) -> bool:
    """A denial that lower-priority reservations could be the cause of (a contact or a
    budget they hold); other denials stand whatever is in flight."""
    codes = {v.code for v in decision.deny}
    return bool(codes) and codes <= CONTACT_CODES | BUDGET_CODES | HELD_CODES


def settle(
    decision: Decision,
    *,
    action: ProposedAction,
    spec: AgentSpec,
    others: list[Contender],
    preempt: list[Contender],
) -> Decision:
    """The decision with the supervisor's conflicts: the lower-priority actions this one
    preempts, or the higher-or-equal ones it yields to."""
    to = action.args.get("to")
    conflicts: list[dict[str, Any]] = []
    for c in preempt:
        kind = "contact" if to and c.recipient == to else "budget"
        conflicts.append(_conflict(kind, c, "preempted", c.recipient, spec))
    if not decision.allow:
        codes = {v.code for v in decision.deny}
        for c in others:
            if c.priority < spec.priority:
                continue
            if codes & CONTACT_CODES and to and c.recipient == to:
                conflicts.append(_conflict("contact", c, "deferred", to, spec))
            elif codes & (BUDGET_CODES | HELD_CODES) and c.cost > 0:
                conflicts.append(_conflict("budget", c, "deferred", c.recipient, spec))
    if not conflicts:
        return decision
    return decision.model_copy(update={"conflicts": conflicts})


def _conflict(
    kind: str, other: Contender, outcome: str, recipient: str | None, spec: AgentSpec
) -> dict[str, Any]:
    if outcome == "preempted":
        reason = (
            f"{spec.name} (priority {spec.priority}) takes the {kind} over "
            f"{other.agent} (priority {other.priority})"
        )
    else:
        reason = (
            f"{other.agent} (priority {other.priority}) holds the {kind}; "
            f"{spec.name} (priority {spec.priority}) yields"
        )
    return {
        "kind": kind,
        "other_agent": other.agent,
        "other_key": other.key,
        "other_workflow_id": other.workflow_id,
        "outcome": outcome,
        "recipient": recipient,
        "reason": reason,
    }


def record(
    session: Session,
    *,
    decision: Decision,
    account_id: str,
    agent: str,
    key: str,
    preempt: list[Contender],
    now: datetime,
) -> bool:
    """In the reservation's transaction: preempted actions lose their reservation (and
    their inbox item), and every conflict is written down. False: an action to preempt
    has moved on (it is executing or done), so the decision must be taken again."""
    for c in preempt:
        row = session.get(ActionRecord, c.key)
        if row is None or row.status not in ("allowed", "pending"):
            return False
        row.status, row.updated_at = PREEMPTED, now
        row.rejection_reason = f"preempted by {agent}"
        session.add(row)
        # The run's open inbox item (an action waits for one at a time).
        for item in session.exec(
            select(Approval).where(
                Approval.workflow_id == c.workflow_id, Approval.status == "pending"
            )
        ):
            item.status, item.decided_by, item.decided_at = PREEMPTED, f"supervisor:{agent}", now
            item.decision_reason = f"preempted by {agent}, which has priority on this account"
            session.add(item)
    for c in decision.conflicts:
        session.add(
            SupervisorConflict(
                account_id=account_id,
                kind=c["kind"],
                winner_agent=agent if c["outcome"] == "preempted" else c["other_agent"],
                winner_key=key if c["outcome"] == "preempted" else c["other_key"],
                other_agent=c["other_agent"] if c["outcome"] == "preempted" else agent,
                other_key=c["other_key"] if c["outcome"] == "preempted" else key,
                outcome=c["outcome"],
                recipient=c["recipient"],
                reason=c["reason"],
                at=now,
            )
        )
    return True


# --- the agent's own limits --------------------------------------------------------


def tighten(
    decision: Decision, *, spec: AgentSpec, action: ProposedAction, agent_spent: float
) -> Decision:
    """The agent's limits and approval overrides on top of the policy's decision: they
    can add a denial or an approval, never remove one."""
    if not decision.allow:
        return decision
    deny: list[Violation] = []
    if action.discount_pct > spec.limits.max_discount_pct + 1e-9:
        deny.append(
            Violation(
                code="agent.discount_cap",
                msg=f"{action.discount_pct:g} % is above {spec.name}'s cap of "
                f"{spec.limits.max_discount_pct:g} %",
            )
        )
    cap = spec.limits.budget_per_account
    if cap is not None and agent_spent + action.expected_cost > cap + 1e-9:
        deny.append(
            Violation(
                code="agent.budget",
                msg=f"{spec.name} has {max(0.0, cap - agent_spent):,.2f} of its "
                f"{cap:,.2f} left on this account this quarter; the action costs "
                f"{action.expected_cost:,.2f}",
            )
        )
    if deny:
        return decision.model_copy(update={"allow": False, "require_approval": False, "deny": deny})
    extra: list[RequiredApproval] = []
    if spec.autonomy == "suggest":
        extra.append(
            RequiredApproval(role="csm", reason=f"{spec.name} only suggests: a person decides")
        )
    elif spec.autonomy == "approve":
        names = {action.step, action.option, action.tool} - {""}
        if names & set(spec.approvals.always):
            extra.append(
                RequiredApproval(
                    role=spec.approvals.role,
                    reason=f"{spec.name} asks a person for {min(names & set(spec.approvals.always))}",
                )
            )
        above = spec.approvals.above_cost
        if above is not None and action.expected_cost > above:
            extra.append(
                RequiredApproval(
                    role=spec.approvals.role,
                    reason=f"costs {action.expected_cost:,.2f}, above {spec.name}'s "
                    f"{above:,.2f} without a person",
                )
            )
    have = {a.role for a in decision.approval}
    extra = [a for a in extra if a.role not in have]
    if not extra:
        return decision
    return decision.model_copy(
        update={"require_approval": True, "approval": [*decision.approval, *extra]}
    )
