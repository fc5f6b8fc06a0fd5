"""Subscriptions are the record of what an account pays for; ARR, seats, the renewal
date and the account's start are derived from them as of any day, so a model trained
on history sees the contract the account had then, not the one it has now.

A subscription is active on `day` when `start <= day < end` (an open end: still
running). Its renewal date on `day` is the first billing-period boundary after `day`
(counted from the start of its cycle: `renews_from`), or its end if that comes first;
the account's is the earliest of its active subscriptions'."""

from __future__ import annotations

import csv
from calendar import monthrange
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import delete
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


def renews_from(sub: Subscription, subs: list[Subscription]) -> date:
    """Where `sub`'s billing cycle started: the start of the run of rows it continues (a
    row of the same product and period that ends the day it starts: a seat or price
    change mid-term does not move the renewal), else its own start."""
    anchor, seen = sub, {id(sub)}
    while prev := next(
        (
            s
            for s in subs
            if id(s) not in seen
            and s.product == anchor.product
            and s.end == anchor.start
            and s.billing_period == anchor.billing_period
        ),
        None,
    ):
        anchor = prev
        seen.add(id(prev))
    return anchor.start


def renewal_on(sub: Subscription, day: date, subs: list[Subscription]) -> date:
    """`sub`'s renewal on `day`: the first boundary of its cycle after `day`, or its end
    (unless a row goes on from there in the same cycle: a change is no renewal)."""
    start, k = renews_from(sub, subs), 1
    while (boundary := add_months(start, k * sub.billing_period)) <= day:
        k += 1
    if sub.end is None or _continued(sub, subs):
        return boundary
    return min(boundary, sub.end)


def _continued(sub: Subscription, subs: list[Subscription]) -> bool:
    return any(
        s.product == sub.product and s.start == sub.end and s.billing_period == sub.billing_period
        for s in subs
    )


def active_on(sub: Subscription, day: date) -> bool:
    return sub.start <= day and (sub.end is None or day < sub.end)


def terms_from(subs: list[Subscription], day: date) -> Terms:
    """The terms `subs` (one account's) give on `day`."""
    active = [s for s in subs if active_on(s, day)]
    return Terms(
        arr=round(sum(s.mrr for s in active) * 12, 2),
        seats=sum(s.quantity for s in active),
        renewal_date=min((renewal_on(s, day, subs) for s in active), default=None),
        started_on=min((s.start for s in subs), default=None),
    )


def terms_as_of(session: Session, account_id: str, day: date) -> Terms:
    """The account's ARR, seats, renewal date and start as of `day`."""
    subs = session.exec(select(Subscription).where(Subscription.account_id == account_id)).all()
    return terms_from(list(subs), day)


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


def current_terms(subs: list[Subscription], today: date) -> Terms:
    """The terms `subs` give today, or on their last active day when nothing is active."""
    terms = terms_from(subs, today)
    ends = [s.end for s in subs if s.end is not None and s.end <= today]
    if terms.renewal_date is None and ends:  # nothing active today: its last terms
        terms = terms_from(subs, date.fromordinal(max(ends).toordinal() - 1))
    return terms


def current_fields(subs: list[Subscription], today: date, renewal_date: date) -> dict[str, Any]:
    """The account's fields its subscriptions give today: ARR, seats, start, and the
    renewal date once the one on record (`renewal_date`) has passed: a renewal recorded
    early (`renewed`: a billing period on) keeps its date until then."""
    terms = current_terms(subs, today)
    out: dict[str, Any] = {
        "arr": terms.arr,
        "seats_purchased": terms.seats,
        "started_on": terms.started_on,
    }
    if terms.renewal_date is not None and renewal_date < today:
        out["renewal_date"] = terms.renewal_date
    return out


def apply_terms(account: Account, subs: list[Subscription], today: date) -> None:
    """The account's current fields from its terms today (or on its last active day)."""
    terms = current_terms(subs, today)
    account.arr, account.seats_purchased = terms.arr, terms.seats
    if terms.renewal_date is not None:
        account.renewal_date = terms.renewal_date
    account.started_on = terms.started_on
