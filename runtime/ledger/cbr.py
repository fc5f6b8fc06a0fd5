"""The cost ledger and cost to retain: CbR = (CS labour + support + education + model +
cloud + discount + incentives) / retained ARR, for a period, by account, segment,
agent or playbook."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlmodel import Session, select

from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.customer import COST_KINDS, CostEntry

Slice = Literal["segment", "agent", "playbook", "account"]
# An agent's action books its cost under the kind it is (a discount is revenue given up).
KIND_BY_TOOL = {"send_offer": "discount"}


def book_action_cost(
    session: Session, action: ActionRecord, *, at: datetime, org_id: str | None = None
) -> None:
    """The executed action's cost, booked once (by its key) to its account's organisation
    (`org_id` when the caller knows it)."""
    if (
        session.exec(select(CostEntry.id).where(CostEntry.action_key == action.run_key)).first()
        is not None
    ):
        return
    if org_id is None:
        account = session.get(Account, action.account_id)
        org_id = account.org_id if account else "demo"
    kind = KIND_BY_TOOL.get(action.tool, "csm_labour" if action.high_touch else "education")
    session.add(
        CostEntry(
            org_id=org_id,
            account_id=action.account_id,
            kind=kind,
            amount=action.expected_cost,
            agent=action.agent,
            playbook=action.agent,
            action_key=action.run_key,
            at=at,
            note=f"{action.tool} executed",
        )
    )


def period(now: datetime, days: int | None = None) -> tuple[datetime, datetime]:
    """The CbR period everyone reports by default: this quarter so far (or the last
    `days` days), end exclusive, so the manager view, the API and the CLI agree."""
    until = now + timedelta(seconds=1)
    if days is not None:
        return until - timedelta(days=days), until
    return datetime(now.year, 3 * ((now.month - 1) // 3) + 1, 1, tzinfo=UTC), until


def retained(account: Account, until: date) -> bool:
    return account.status != "churned" or (
        account.churned_at is not None and account.churned_at > until
    )


def cbr(
    session: Session, *, org_id: str, by: Slice, since: datetime, until: datetime
) -> list[dict[str, Any]]:
    """One row per slice: cost by kind, total, retained ARR, CbR, accounts."""
    accounts = {a.id: a for a in session.exec(select(Account).where(Account.org_id == org_id))}
    entries = session.exec(
        select(CostEntry).where(
            CostEntry.org_id == org_id, CostEntry.at >= since, CostEntry.at < until
        )
    ).all()
    cost: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COST_KINDS, 0.0))
    members: dict[str, set[str]] = defaultdict(set)
    for e in entries:
        key = _key(by, e, accounts)
        if key is None:
            continue
        cost[key][e.kind] = cost[key].get(e.kind, 0.0) + e.amount
        members[key].add(e.account_id)
    if by in ("segment", "account"):  # every account of the slice counts, with or without costs
        for a in accounts.values():
            members[a.segment if by == "segment" else a.id].add(a.id)
    end = until.date()
    rows = []
    for key in sorted(members):
        kept = [accounts[a] for a in members[key] if a in accounts and retained(accounts[a], end)]
        arr = sum(a.arr for a in kept)
        total = sum(cost[key].values())
        rows.append(
            {
                by: key,
                "cost": {k: round(v, 2) for k, v in cost[key].items()},
                "total_cost": round(total, 2),
                "retained_arr": round(arr, 2),
                "cbr": round(total / arr, 4) if arr else None,
                "accounts": len(members[key]),
                "retained_accounts": len(kept),
            }
        )
    return rows


def _key(by: Slice, e: CostEntry, accounts: dict[str, Account]) -> str | None:
    if by == "segment":
        a = accounts.get(e.account_id)
        return a.segment if a else None
    if by == "account":
        return e.account_id
    if by == "agent":
        return e.agent or "(people)"
    return e.playbook or "(none)"


LEDGER_RATES = {  # the demo's ledger rates: CSM hourly cost and a support ticket, by segment
    "csm_hourly": {"enterprise": 95.0, "mid_market": 80.0, "smb": 70.0, "tech_touch": 60.0},
    "ticket": {"enterprise": 60.0, "mid_market": 45.0, "smb": 35.0, "tech_touch": 25.0},
}
