"""The one event fold: an event changes the account's snapshot fields and that day's
usage rollup together, here and nowhere else; then the account is rescored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from autopilot.runtime.health.features import MODULES
from autopilot.runtime.health.scoring import score
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay, AccountScore


def fold(session: Session, account: Account, ev: dict[str, Any], at: datetime) -> None:
    """Fold one event (as `EventIn.model_dump(exclude_none=True)`) into the account
    and into the rollup of the day it happened (incremental: nothing is recomputed)."""
    day = at.date()
    row = session.exec(
        select(AccountDay).where(AccountDay.account_id == account.id, AccountDay.day == day)
    ).first()
    row = row or AccountDay(account_id=account.id, day=day)
    match ev["type"]:
        case "login":
            logins = ev.get("logins", 1)  # an explicit `logins: 0` is no login
            account.logins_30d += logins
            row.logins += logins
            if ev.get("active_users") is not None:
                row.active_users = max(row.active_users, ev["active_users"])
            elif logins:
                row.active_users += 1
        case "usage_snapshot":
            account.active_users_30d = ev.get("active_users", 0)
            row.active_users = ev.get("active_users", 0)
            if ev.get("seats_used") is not None:
                account.seats_used = row.seats_used = ev["seats_used"]
            if ev.get("logins") is not None:
                row.logins = ev["logins"]
        case "feature_use":
            row.modules |= 1 << MODULES.index(ev["module"])
        case "ticket_opened":
            account.open_tickets += 1
            account.p1_open += ev.get("priority") == "P1"
            row.tickets += 1
            row.p1 += ev.get("priority") == "P1"
        case "ticket_closed":
            account.open_tickets = max(0, account.open_tickets - 1)
            if ev.get("priority") == "P1":
                account.p1_open = max(0, account.p1_open - 1)
        case "nps":
            account.nps = row.nps = ev["score"]
        case "sentiment":
            account.sentiment = ev.get("sentiment", 0.0)
            row.sentiment_sum += ev.get("sentiment", 0.0)
            row.sentiment_n += 1
        case "payment_failed":
            account.payment_failures_90d += 1
            row.payment_failed += 1
        case "churned":
            account.status, account.churned_at = "churned", day
        case "renewed":
            account.renewal_date = account.renewal_date.replace(year=account.renewal_date.year + 1)
        case "expanded" | "contract_signed":
            account.arr = (
                ev["amount"]
                if ev["type"] == "contract_signed"
                else account.arr + ev.get("amount", 0)
            )
            if ev.get("seats"):
                account.seats_purchased = (
                    ev["seats"]
                    if ev["type"] == "contract_signed"
                    else account.seats_purchased + ev["seats"]
                )
    session.add(account)
    session.add(row)


def on_event(
    session: Session, account: Account, ev: dict[str, Any], *, at: datetime
) -> AccountScore | None:
    """The incremental path: fold the event, rescore this one account as of its day."""
    fold(session, account, ev, at)
    session.flush()
    if account.status != "active":
        return None
    return score(session, [account], today=at.date(), now=at)[0]
