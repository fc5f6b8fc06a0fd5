"""The manager view's figures, scoped to one organisation."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from autopilot.runtime.ledger.cbr import cbr, period
from autopilot.runtime.ledger.spend import quarter_start, segment_spend
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.services import Services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.approvals import Approval

AGE_BUCKETS = [(4, "< 4 h"), (24, "4–24 h"), (72, "1–3 days"), (float("inf"), "> 3 days")]


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
    executed = [a for a in actions if a.status == "executed"]
    autonomous = [a for a in executed if not a.needed_approval]
    seg_limits = read_limits(svc.policy).budget
    per_agent: dict[str, Counter[str]] = {}
    for a in actions:
        per_agent.setdefault(a.agent, Counter())[a.status] += 1
    return {
        "pending_total": len(pending),
        "pending_by_age": [(label, by_age.get(label, 0)) for _, label in AGE_BUCKETS],
        "pending_by_role": sorted(by_role.items()),
        "autonomy_rate": round(len(autonomous) / len(executed), 3) if executed else None,
        "executed": len(executed),
        "executed_autonomously": len(autonomous),
        "spend_vs_budget": [
            (seg, spend.get(seg, 0.0), lim.segment_quarter_budget)
            for seg, lim in sorted(seg_limits.items())
        ],
        "spend_chart": [(seg, round(spend.get(seg, 0.0), 2)) for seg in sorted(seg_limits)],
        "cbr_by_segment": [(row["segment"], row["cbr"]) for row in cbr_rows],
        "actions_per_agent": {agent: dict(c) for agent, c in sorted(per_agent.items())},
    }
