"""The one event fold: an event changes that day's usage rollup and the account's
fields, here and nowhere else; then the account is rescored.

History (an event from before the live window) changes the rollups and the account's
lifecycle (churn, renewal, contract, expansion) but not its current state (NPS,
sentiment, seats in use, open tickets): a backfill must not overwrite today's facts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlmodel import Session, select

from autopilot.runtime.accounts.subscription_events import BOOK_EVENTS, EVENTS, Book
from autopilot.runtime.accounts.subscriptions import add_months
from autopilot.runtime.health.features import MODULES
from autopilot.runtime.health.scoring import score
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay, AccountScore


def fold(
    session: Session, account: Account, ev: dict[str, Any], at: datetime, *, current: bool = True
) -> None:
    """Fold one event (as `EventIn.model_dump(exclude_none=True)`) into the rollup of the
    day it happened (UTC) and into the account (its current state only if `current`)."""
    day = at.astimezone(UTC).date()
    row = session.exec(
        select(AccountDay).where(AccountDay.account_id == account.id, AccountDay.day == day)
    ).first() or AccountDay(account_id=account.id, day=day)
    book = Book(session, today=datetime.now(UTC).date())
    fold_into(row, account, ev, day, current=current, book=book)
    book.write()
    session.add(account)
    session.add(row)


def fold_into(
    row: AccountDay,
    account: Account,
    ev: dict[str, Any],
    day: date,
    *,
    current: bool,
    book: Book | None = None,
) -> None:
    """The fold itself, on rows already at hand: `row` is the account's rollup of `day`,
    `book` holds (or reads) the account's subscriptions (needed by a renewal and the
    subscription events)."""
    _fold_day(row, ev)
    _fold_lifecycle(account, ev, day, book)
    if current:
        _fold_state(account, ev)


def _fold_day(row: AccountDay, ev: dict[str, Any]) -> None:
    match ev["type"]:
        case "login":
            logins = ev.get("logins", 1)  # an explicit `logins: 0` is no login
            row.logins += logins
            if ev.get("active_users") is not None:
                row.active_users = max(row.active_users, ev["active_users"])
            elif logins:
                row.active_users += 1
        case "usage_snapshot":
            row.active_users = ev.get("active_users", 0)
            if ev.get("seats_used") is not None:
                row.seats_used = ev["seats_used"]
            if ev.get("logins") is not None:
                row.logins = ev["logins"]
        case "feature_use":
            row.modules |= 1 << MODULES.index(ev["module"])
        case "ticket_opened":
            row.tickets += 1
            row.p1 += ev.get("priority") == "P1"
        case "nps":
            row.nps = ev["score"]
        case "sentiment":
            row.sentiment_sum += ev.get("sentiment", 0.0)
            row.sentiment_n += 1
        case "payment_failed":
            row.payment_failed += 1
        case _:
            pass


def _fold_state(account: Account, ev: dict[str, Any]) -> None:
    match ev["type"]:
        case "login":
            account.logins_30d += ev.get("logins", 1)
        case "usage_snapshot":
            account.active_users_30d = ev.get("active_users", 0)
            if ev.get("seats_used") is not None:
                account.seats_used = ev["seats_used"]
        case "ticket_opened":
            account.open_tickets += 1
            account.p1_open += ev.get("priority") == "P1"
        case "ticket_closed":
            account.open_tickets = max(0, account.open_tickets - 1)
            if ev.get("priority") == "P1":
                account.p1_open = max(0, account.p1_open - 1)
        case "nps":
            account.nps = ev["score"]
        case "sentiment":
            account.sentiment = ev.get("sentiment", 0.0)
        case "payment_failed":
            account.payment_failures_90d += 1
        case _:
            pass


def _fold_lifecycle(account: Account, ev: dict[str, Any], day: date, book: Book | None) -> None:
    if book is None and ev["type"] in BOOK_EVENTS:
        raise ValueError(f"a '{ev['type']}' event is folded with the account's subscriptions")
    match ev["type"]:
        case "churned":
            account.status, account.churned_at = "churned", day
        case "renewed":  # by the billing period on record (monthly, 6-month, yearly...)
            assert book is not None
            account.renewal_date = add_months(account.renewal_date, book.period(account.id, day))
        case t if t in EVENTS:  # the subscriptions, then the terms they give
            assert book is not None
            book.apply(account, ev, day)
        case "expanded":
            account.arr += ev.get("amount", 0)
            account.seats_purchased += ev.get("seats", 0)
        case "contract_signed":
            account.arr = ev["amount"]
            if ev.get("seats"):
                account.seats_purchased = ev["seats"]
        case _:
            pass


def on_event(
    session: Session,
    account: Account,
    ev: dict[str, Any],
    *,
    at: datetime,
    today: date | None = None,
) -> AccountScore | None:
    """The incremental path: fold a live event, rescore this one account as of `today`
    (default: the event's day) so a late event does not score the account as of yesterday."""
    fold(session, account, ev, at)
    session.flush()
    if account.status != "active":
        return None
    when = at if today is None else max(at, datetime.now(UTC))  # scored_at's day is the day scored
    return score(session, [account], today=today or at.astimezone(UTC).date(), now=when)[0]
