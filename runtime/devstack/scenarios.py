"""Scripted account histories shared by the demo, the tests and the benchmarks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.accounts.fold import on_event
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.customer import AccountScore

# Health 2.0 of a churn-rescue case: below the Churn Rescue line (health 50, churn risk
# 0.5); a mild case stays above the planner's high-risk mark (risk 0.7, health 41.5).
RESCUE_LINE, HIGH_RISK_LINE = 50.0, 41.5


def drop_events(db: Engine, account_id: str, *, severe: bool = False) -> list[dict[str, Any]]:
    """Live events that take a healthy account below the Churn Rescue line, crossing
    it only with the last event: bad sentiment, a detractor's NPS, (resolved) P1
    outages and failed payments, then a usage snapshot with fewer seats in use. How
    hard the account is hit and how many seats stay in use are found against the real
    Health 2.0 model (each try rolled back), so a mild case lands between the two
    lines and a severe one below both."""
    with Session(db) as session:
        account = session.get(Account, account_id)
        if account is None:
            raise LookupError(f"unknown account {account_id}")
        seats = account.seats_purchased
    target = HIGH_RISK_LINE if severe else RESCUE_LINE
    for level in range(2 if severe else 0, 5):
        first = _blows(account_id, level)
        lo, hi = 0, seats  # the most seats still in use that lands below the target
        if (path := _after(db, account_id, first, 0)) is None or min(path[:-1]) < RESCUE_LINE:
            break  # the blows alone cross the line: a harder level only crosses earlier
        if path[-1] >= target:
            continue  # not even an empty account gets there: hit harder
        while lo < hi:
            mid = (lo + hi + 1) // 2
            end = _after(db, account_id, first, mid)
            if end is not None and end[-1] < target:
                lo = mid
            else:
                hi = mid - 1
        end = _after(db, account_id, first, lo)
        if end is not None and (severe or end[-1] >= HIGH_RISK_LINE):
            return [*first, _usage(account_id, lo)]
    raise LookupError(
        f"{account_id}: no drop lands its health where a {'severe' if severe else 'mild'} case must"
    )


def _blows(account_id: str, level: int) -> list[dict[str, Any]]:
    """Bad news, harder with each level: sentiment, NPS, resolved P1s, failed payments."""
    events: list[dict[str, Any]] = [
        {"account_id": account_id, "type": "sentiment", "sentiment": -1.0},
        {"account_id": account_id, "type": "nps", "score": 0},
    ]
    for _ in range(level):
        # A P1 outage, already resolved: it weighs on the score, and no outage is open.
        events += [
            {"account_id": account_id, "type": "ticket_opened", "priority": "P1"},
            {"account_id": account_id, "type": "ticket_closed", "priority": "P1"},
            {"account_id": account_id, "type": "payment_failed", "amount": 1200.0},
        ]
    return events


def _usage(account_id: str, seats_used: int) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "type": "usage_snapshot",
        "active_users": 0,
        "seats_used": seats_used,
    }


def _after(
    db: Engine, account_id: str, first: list[dict[str, Any]], seats_used: int
) -> list[float] | None:
    return _health_path(db, account_id, [*first, _usage(account_id, seats_used)])


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
