"""Scripted account histories shared by the demo, the tests and the benchmarks."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.store.accounts import Account, Contact


def drop_events(account_id: str, *, severe: bool = False) -> list[dict[str, Any]]:
    """Events that take a healthy account (health ≥ 95) below the Churn Rescue
    threshold of 50, crossing it only with the last event. `severe` ends below 30,
    past the planner's high-risk mark."""
    if severe:
        return [
            {"account_id": account_id, "type": "ticket_opened", "priority": "P1"},
            {"account_id": account_id, "type": "payment_failed", "amount": 1200.0},
            {"account_id": account_id, "type": "usage_snapshot", "active_users": 0, "seats_used": 0},
        ]
    return [
        {"account_id": account_id, "type": "ticket_opened", "priority": "P1"},
        {"account_id": account_id, "type": "nps", "score": 1},
        {"account_id": account_id, "type": "usage_snapshot", "active_users": 0},
    ]


def pick_accounts(db: Engine, segment: str, *, n: int = 1, min_arr: float = 0,
                  max_arr: float = float("inf"), min_health: float = 95, strict: bool = True) -> list[str]:
    """Healthy accounts of a segment whose champion accepts automated email
    (exactly `n`, or up to `n` when not strict)."""
    with Session(db) as session:
        opted_out = set(session.exec(select(Contact.account_id).where(Contact.opted_out == True)))  # noqa: E712
        rows = session.exec(
            select(Account).where(Account.segment == segment, Account.health >= min_health)
            .order_by(col(Account.id))
        ).all()
    picked = [r.id for r in rows if min_arr <= r.arr < max_arr and r.id not in opted_out][:n]
    if strict and len(picked) < n:
        raise LookupError(f"the portfolio has fewer than {n} healthy {segment} accounts in range")
    return picked
