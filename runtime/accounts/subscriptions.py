"""Subscriptions are the record of what an account pays for; ARR, seats, the renewal
date and the account's start are derived from them as of any day, so a model trained
on history sees the contract the account had then, not the one it has now.

A subscription is active on `day` when `start <= day < end` (an open end: still
running). Its renewal date on `day` is the first billing-period boundary after `day`
(counted from `start`), or its end if that comes first; the account's is the earliest
of its active subscriptions'."""

from __future__ import annotations

import csv
from calendar import monthrange
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import delete
from sqlalchemy.orm import object_session
from sqlmodel import Session, col, select

from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import Subscription

BILLING_PERIODS = (1, 3, 6, 12, 24, 36)  # months


class SubscriptionError(ValueError):
    """A bad row of a subscriptions file: `path:line: field: problem`."""

    def __init__(self, path: str, line: int, field: str, problem: str) -> None:
        self.path, self.line, self.field, self.problem = path, line, field, problem
        super().__init__(f"{path}:{line}: {field}: {problem}")


@dataclass(frozen=True)
class Terms:
    """An account's commercial terms on one day."""

    arr: float
    seats: int
    renewal_date: date | None  # None: nothing active that day
    started_on: date | None  # the first subscription's start


def add_months(day: date, months: int) -> date:
    """`day` moved by whole months, the day of month clamped (31 Jan + 1 = 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, monthrange(year, month + 1)[1]))


def _renewal(sub: Subscription, day: date) -> date:
    k = 1
    while (boundary := add_months(sub.start, k * sub.billing_period)) <= day:
        k += 1
    return boundary if sub.end is None else min(boundary, sub.end)


def _active(sub: Subscription, day: date) -> bool:
    return sub.start <= day and (sub.end is None or day < sub.end)


def terms_from(subs: list[Subscription], day: date) -> Terms:
    """The terms `subs` (one account's) give on `day`."""
    active = [s for s in subs if _active(s, day)]
    return Terms(
        arr=round(sum(s.mrr for s in active) * 12, 2),
        seats=sum(s.quantity for s in active),
        renewal_date=min((_renewal(s, day) for s in active), default=None),
        started_on=min((s.start for s in subs), default=None),
    )


def terms_as_of(session: Session, account_id: str, day: date) -> Terms:
    """The account's ARR, seats, renewal date and start as of `day`."""
    subs = session.exec(select(Subscription).where(Subscription.account_id == account_id)).all()
    return terms_from(list(subs), day)


def billing_period(account: Account) -> int:
    """Months between the account's renewals: its latest subscription's billing period
    (a year when it has none on record, or the account is not in a session)."""
    session = object_session(account)
    if session is None:
        return 12
    with session.no_autoflush:  # called mid-fold: pending rows are not ready to write
        period = session.scalars(
            select(Subscription.billing_period)
            .where(Subscription.account_id == account.id)
            .order_by(col(Subscription.start).desc())
        ).first()
    return 12 if period is None else int(period)


def _date(path: str, line: int, field: str, text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise SubscriptionError(path, line, field, f"not a date (YYYY-MM-DD): {text!r}") from None


def _number(path: str, line: int, field: str, text: str, kind: type[int | float]) -> float:
    try:
        value = kind(text.strip())
    except ValueError:
        raise SubscriptionError(path, line, field, f"not a number: {text!r}") from None
    if not 0 <= value <= 1e12:
        raise SubscriptionError(path, line, field, "must be between 0 and 1e12")
    return value


def read_subscriptions(path: Path) -> Iterator[tuple[int, Subscription]]:
    """Each row of a subscriptions CSV (account_id, product, mrr, quantity, start, end,
    billing_period) with its line, validated; the first bad cell raises."""
    name = str(path)
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"account_id", "product", "mrr", "start"} - set(reader.fieldnames or [])
        if missing:
            raise SubscriptionError(name, 1, min(missing), "missing column")
        for row in reader:
            line = reader.line_num
            if not (row.get("account_id") or "").strip():
                raise SubscriptionError(name, line, "account_id", "empty")
            period = int(
                _number(name, line, "billing_period", row.get("billing_period") or "12", int)
            )
            if period not in BILLING_PERIODS:
                raise SubscriptionError(
                    name, line, "billing_period", f"must be one of {BILLING_PERIODS} (months)"
                )
            start = _date(name, line, "start", row["start"])
            end = _date(name, line, "end", row["end"]) if row.get("end") else None
            if end is not None and end <= start:
                raise SubscriptionError(name, line, "end", "must be after start")
            yield (
                line,
                Subscription(
                    account_id=row["account_id"].strip(),
                    product=(row.get("product") or "").strip() or "default",
                    mrr=_number(name, line, "mrr", row["mrr"], float),
                    quantity=int(_number(name, line, "quantity", row.get("quantity") or "0", int)),
                    start=start,
                    end=end,
                    billing_period=period,
                ),
            )


@dataclass(frozen=True)
class SubscriptionsImported:
    subscriptions: int
    accounts: int


def import_subscriptions(
    session: Session, path: Path, *, org_id: str | None, today: date
) -> SubscriptionsImported:
    """Replace the subscriptions of the accounts `path` names (a re-run changes nothing)
    and set each account's ARR, seats, renewal date and start from its terms `today`
    (its last terms, for an account with nothing active today)."""
    rows = list(read_subscriptions(path))
    ids = {s.account_id for _, s in rows}
    query = select(Account).where(col(Account.id).in_(ids))
    if org_id is not None:
        query = query.where(Account.org_id == org_id)
    accounts = {a.id: a for a in session.exec(query).all()}
    for line, sub in rows:
        if sub.account_id not in accounts:
            raise SubscriptionError(
                str(path), line, "account_id", f"unknown account {sub.account_id!r}"
            )
    session.exec(delete(Subscription).where(col(Subscription.account_id).in_(ids)))  # type: ignore[call-overload]
    by_account: dict[str, list[Subscription]] = {}
    for _, sub in rows:
        session.add(sub)
        by_account.setdefault(sub.account_id, []).append(sub)
    for account_id, subs in by_account.items():
        apply_terms(accounts[account_id], subs, today)
    session.flush()
    return SubscriptionsImported(subscriptions=len(rows), accounts=len(by_account))


def apply_terms(account: Account, subs: list[Subscription], today: date) -> None:
    """The account's current fields from its terms today (or on its last active day)."""
    terms = terms_from(subs, today)
    ends = [s.end for s in subs if s.end is not None and s.end <= today]
    if terms.renewal_date is None and ends:  # nothing active today: its last terms
        terms = terms_from(subs, date.fromordinal(max(ends).toordinal() - 1))
    account.arr, account.seats_purchased = terms.arr, terms.seats
    if terms.renewal_date is not None:
        account.renewal_date = terms.renewal_date
    account.started_on = terms.started_on
