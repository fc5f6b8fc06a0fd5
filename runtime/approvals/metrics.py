"""The manager view's figures, scoped to one organisation, and the autonomy rate."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from autopilot.runtime.graph.requests import approval_id_for
from autopilot.runtime.ledger.cbr import cbr, period
from autopilot.runtime.ledger.spend import quarter_start, segment_spend
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.services import Services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.audit import AuditEntry
from autopilot.runtime.store.tool_calls import ToolCallRecord

AGE_BUCKETS = [(4, "< 4 h"), (24, "4–24 h"), (72, "1–3 days"), (float("inf"), "> 3 days")]
IN_FLIGHT = ("allowed", "pending", "executing")
# The outcomes of the decided actions (they add up to `decided`); executed ones are split
# three ways: on the agent's own, with a person in the loop, rolled back afterwards.
# `other`: any other final status (a supervisor's preemption, say): decided, not autonomous.
OUTCOMES = ("autonomous", "with_person", "rolled_back", "rejected", "denied", "failed", "other")


def manager_view(svc: Services, *, org_id: str, now: datetime) -> dict[str, Any]:
    since = quarter_start(now)
    with Session(svc.db) as session:
        accounts = {a.id: a for a in session.exec(select(Account).where(Account.org_id == org_id))}
        pending = session.exec(
            select(Approval).where(Approval.org_id == org_id, Approval.status == "pending")
        ).all()
        actions = session.exec(
            select(ActionRecord).where(col(ActionRecord.account_id).in_(list(accounts)))
        ).all()
        # The one ledger (spend and reservations) and the one CbR, as the gate and `metrics cbr` see them.
        spend = segment_spend(session, account_ids=list(accounts), now=now)
        cbr_rows = cbr(session, org_id=org_id, by="segment", since=since, until=period(now)[1])
        rates = autonomy(session, org_id=org_id, since=since, until=period(now)[1])
    by_age: Counter[str] = Counter()
    by_role: Counter[str] = Counter()
    for item in pending:
        created = (
            item.created_at
            if item.created_at.tzinfo
            else item.created_at.replace(tzinfo=now.tzinfo)
        )
        hours = (now - created).total_seconds() / 3600
        by_age[next(label for limit, label in AGE_BUCKETS if hours < limit)] += 1
        for role in item.roles:
            by_role[role] += 1
    seg_limits = read_limits(svc.policy).budget
    per_agent: dict[str, Counter[str]] = {}
    for a in actions:
        per_agent.setdefault(a.agent, Counter())[a.status] += 1
    return {
        "pending_total": len(pending),
        "pending_by_age": [(label, by_age.get(label, 0)) for _, label in AGE_BUCKETS],
        "pending_by_role": sorted(by_role.items()),
        "autonomy_rate": rates["overall"]["rate"],
        "autonomy": rates,
        "spend_vs_budget": [
            (seg, spend.get(seg, 0.0), lim.segment_quarter_budget)
            for seg, lim in sorted(seg_limits.items())
        ],
        "spend_chart": [(seg, round(spend.get(seg, 0.0), 2)) for seg in sorted(seg_limits)],
        "cbr_by_segment": [(row["segment"], row["cbr"]) for row in cbr_rows],
        "actions_per_agent": {agent: dict(c) for agent, c in sorted(per_agent.items())},
    }


def autonomy(session: Session, *, org_id: str, since: datetime, until: datetime) -> dict[str, Any]:
    """The autonomy rate: of the organisation's actions decided in [since, until) (any
    status but allowed or pending, by `updated_at`), the share the agent
    executed with no person in the loop (gated without approval, no inbox item) and that
    was not rolled back (its compensation ran). Overall, per agent, per segment (the
    account's, as CbR) and per (agent, segment); actions still allowed or pending, proposed
    before `until`, are counted apart as `in_flight`, outside the rate."""
    segments = dict(
        session.exec(select(Account.id, Account.segment).where(Account.org_id == org_id)).all()
    )
    actions = session.exec(
        select(ActionRecord).where(
            col(ActionRecord.account_id).in_(list(segments)),
            col(ActionRecord.updated_at) < until,
            or_(
                col(ActionRecord.status).in_(IN_FLIGHT),
                col(ActionRecord.updated_at) >= since,
            ),
        )
    ).all()
    executed = [a.run_key for a in actions if a.status == "executed"]
    # An inbox item is keyed by the approval id derived from the action's run key (an edit's
    # item descends from it); `run_key` is matched too.
    seen = {
        key
        for row in session.exec(
            select(Approval.id, Approval.run_key).where(
                col(Approval.account_id).in_(list(segments))
            )
        )
        for key in row
    }
    # A rollback runs the compensating tool once under `<run_key>/compensate` and audits it.
    undo = {f"{k}/compensate": k for k in executed}
    undone = {
        undo[k]
        for k in session.exec(
            select(ToolCallRecord.idempotency_key).where(
                col(ToolCallRecord.idempotency_key).in_(list(undo)),
                ToolCallRecord.status == "done",
            )
        )
    } | {
        undo[e.run_key]
        for e in session.exec(
            select(AuditEntry).where(
                col(AuditEntry.run_key).in_(list(undo)), AuditEntry.step == "compensate"
            )
        )
        if e.decision.get("status") == "compensated"
    }

    def outcome(a: ActionRecord) -> str:
        if a.status in IN_FLIGHT:
            return "in_flight"
        if a.status != "executed":
            return a.status if a.status in OUTCOMES else "other"
        if a.run_key in undone:
            return "rolled_back"
        person = a.needed_approval or a.run_key in seen or approval_id_for(a.run_key) in seen
        return "with_person" if person else "autonomous"

    overall: Counter[str] = Counter()
    slices: dict[tuple[str, ...], Counter[str]] = {}
    for a in actions:
        what, segment = outcome(a), segments.get(a.account_id) or a.segment
        overall[what] += 1
        for key in (("agent", a.agent), ("segment", segment), ("pair", a.agent, segment)):
            slices.setdefault(key, Counter())[what] += 1

    def rows(kind: str, *names: str) -> list[dict[str, Any]]:
        return [
            dict(zip(names, key[1:], strict=True)) | _rate(c)
            for key, c in sorted(slices.items())
            if key[0] == kind
        ]

    return {
        "org_id": org_id,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "overall": _rate(overall),
        "by_agent": rows("agent", "agent"),
        "by_segment": rows("segment", "segment"),
        "by_agent_segment": rows("pair", "agent", "segment"),
    }


def _rate(counts: Counter[str]) -> dict[str, Any]:
    decided = sum(counts[k] for k in OUTCOMES)
    return {
        "rate": round(counts["autonomous"] / decided, 3) if decided else None,
        "decided": decided,
        **{k: counts[k] for k in OUTCOMES},
        "in_flight": counts["in_flight"],
    }
