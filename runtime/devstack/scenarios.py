"""Scripted account histories shared by the demo, the tests and the benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from autopilot.runtime.accounts.fold import on_event
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.customer import AccountScore
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

# Health 2.0 of a churn-rescue case: below the Churn Rescue line (health 50, churn risk
# 0.5); a mild case stays above the planner's high-risk mark (risk 0.7, health 41.5).
RESCUE_LINE, HIGH_RISK_LINE = 50.0, 41.5


def drop_events(db: Engine, account_id: str, *, severe: bool = False) -> list[dict[str, Any]]:
    """Live events that take a healthy account below the Churn Rescue line, crossing
    it only with the last event: bad sentiment, a detractor's NPS, a (resolved) P1
    outage and a failed payment, then a usage snapshot with fewer seats in use. How many seats
    stay in use is found against the real Health 2.0 model (each try rolled back), so
    a mild case lands between the two lines and a severe one below both."""
    first = [
        {"account_id": account_id, "type": "sentiment", "sentiment": -1.0},
        {"account_id": account_id, "type": "nps", "score": 0},
        # A P1 outage, already resolved: it weighs on the score, and no outage is open.
        {"account_id": account_id, "type": "ticket_opened", "priority": "P1"},
        {"account_id": account_id, "type": "ticket_closed", "priority": "P1"},
        {"account_id": account_id, "type": "payment_failed", "amount": 1200.0},
    ]
    if severe:  # and it gets worse
        first += [
            {"account_id": account_id, "type": "ticket_opened", "priority": "P1"},
            {"account_id": account_id, "type": "ticket_closed", "priority": "P1"},
            {"account_id": account_id, "type": "payment_failed", "amount": 1200.0},
            {"account_id": account_id, "type": "sentiment", "sentiment": -1.0},
        ]
    with Session(db) as session:
        account = session.get(Account, account_id)
        if account is None:
            raise LookupError(f"unknown account {account_id}")
        seats = account.seats_purchased
    for used in sorted({round(seats * f / 40) for f in range(40, -1, -1)}, reverse=True):
        last = {
            "account_id": account_id,
            "type": "usage_snapshot",
            "active_users": 0,
            "seats_used": used,
        }
        path = _health_path(db, account_id, [*first, last])
        if path is None or min(path[:-1]) < RESCUE_LINE:
            break
        if path[-1] < (HIGH_RISK_LINE if severe else RESCUE_LINE) and (
            severe or path[-1] >= HIGH_RISK_LINE
        ):
            return [*first, last]
    raise LookupError(
        f"{account_id}: no usage drop lands its health where a {'severe' if severe else 'mild'} case must"
    )


def _health_path(db: Engine, account_id: str, events: list[dict[str, Any]]) -> list[float] | None:
    """Health 2.0 after each event, folded and scored for real, then rolled back."""
    now = datetime.now(UTC)
    with Session(db) as session:
        account = session.get(Account, account_id)
        assert account is not None
        path = []
        for ev in events:
            scored = on_event(
                session, account, {k: v for k, v in ev.items() if k != "account_id"}, at=now
            )
            if scored is None:
                return None
            path.append(scored.health)
        session.rollback()
    return path


def _rescuable(db: Engine, account_id: str, *, severe: bool) -> bool:
    try:
        drop_events(db, account_id, severe=severe)
    except LookupError:
        return False
    return True


def awake(contact: Contact, at: datetime) -> bool:
    return 8 <= at.astimezone(ZoneInfo(contact.timezone)).hour < 20


def pick_accounts(
    db: Engine,
    segment: str,
    *,
    n: int = 1,
    min_arr: float = 0,
    max_arr: float = float("inf"),
    min_health: float = 80,
    at: datetime | None = None,
    strict: bool = True,
    org_id: str | None = None,
    margin: timedelta = timedelta(hours=1),
    severe: bool = False,
) -> list[str]:
    """Healthy accounts of a segment whose contacts all accept automated email, have
    the pre-use notice on record, and are within business hours from `at` until
    `margin` later, so a run cannot cross into quiet hours, and whose Health 2.0 a
    (`severe`) drop can take below the Churn Rescue line (exactly `n`, or up to `n`
    when not strict)."""
    at = at or datetime.now(UTC)
    with Session(db) as session:
        contacts: dict[str, list[Contact]] = {}
        for c in session.exec(select(Contact)):
            contacts.setdefault(c.account_id, []).append(c)
        rows = session.exec(
            select(Account)
            .join(AccountScore, col(AccountScore.account_id) == Account.id)
            .where(
                Account.segment == segment,
                AccountScore.health >= min_health,
                Account.org_id == org_id if org_id else True,
            )
            .order_by(col(Account.id))
        ).all()
    picked: list[str] = []
    for r in rows:
        if len(picked) == n:
            break
        if (
            min_arr <= r.arr < max_arr
            and all(
                not c.opted_out
                and c.notice_at is not None
                and awake(c, at)
                and awake(c, at + margin)
                for c in contacts.get(r.id, [])
            )
            and _rescuable(db, r.id, severe=severe)
        ):
            picked.append(r.id)
    if strict and len(picked) < n:
        raise LookupError(f"the portfolio has fewer than {n} healthy {segment} accounts in range")
    return picked
