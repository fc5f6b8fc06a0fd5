"""Scripted account histories shared by the demo, the tests and the benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.store.accounts import Account, Contact


def drop_events(account_id: str, *, severe: bool = False) -> list[dict[str, Any]]:
    """Events that take a healthy account (health ≥ 95) below the Churn Rescue
    threshold of 50, crossing it only with the last event. `severe` ends below 30,
    past the planner's high-risk mark."""
    if severe:
        return [
            {"account_id": account_id, "type": "sentiment", "sentiment": -1.0},
            {"account_id": account_id, "type": "payment_failed", "amount": 1200.0},
            {"account_id": account_id, "type": "usage_snapshot", "active_users": 0, "seats_used": 0},
        ]
    return [
        {"account_id": account_id, "type": "sentiment", "sentiment": -1.0},
        {"account_id": account_id, "type": "nps", "score": 1},
        {"account_id": account_id, "type": "usage_snapshot", "active_users": 0},
    ]


def awake(contact: Contact, at: datetime) -> bool:
    return 8 <= at.astimezone(ZoneInfo(contact.timezone)).hour < 20


def pick_accounts(db: Engine, segment: str, *, n: int = 1, min_arr: float = 0, max_arr: float = float("inf"),
                  min_health: float = 95, at: datetime | None = None, strict: bool = True,
                  org_id: str | None = None, margin: timedelta = timedelta(hours=1)) -> list[str]:
    """Healthy accounts of a segment whose contacts all accept automated email, have
    the pre-use notice on record, and are within business hours from `at` until
    `margin` later, so a run cannot cross into quiet hours (exactly `n`, or up to `n`
    when not strict)."""
    at = at or datetime.now(UTC)
    with Session(db) as session:
        contacts: dict[str, list[Contact]] = {}
        for c in session.exec(select(Contact)):
            contacts.setdefault(c.account_id, []).append(c)
        rows = session.exec(
            select(Account).where(Account.segment == segment, Account.health >= min_health,
                                  Account.org_id == org_id if org_id else True)
            .order_by(col(Account.id))
        ).all()
    picked = [
        r.id for r in rows
        if min_arr <= r.arr < max_arr
        and all(not c.opted_out and c.notice_at is not None and awake(c, at) and awake(c, at + margin)
                for c in contacts.get(r.id, []))
    ][:n]
    if strict and len(picked) < n:
        raise LookupError(f"the portfolio has fewer than {n} healthy {segment} accounts in range")
    return picked
