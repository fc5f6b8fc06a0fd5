"""Subscription and contract events on the live path: each changes the account's
`Subscription` rows as of the day it happened, and the account's ARR, seats, renewal
date and start then follow from those rows as of today (`subscriptions.apply_terms`),
exactly as after a subscriptions import of the same rows.

- `subscription.started`: a product's subscription from that day (`mrr`, `quantity`,
  `billing_period`, optional `ends_on`);
- `subscription.changed`: from that day on, the running subscription of `product` has a
  new `mrr`, `quantity` or `billing_period`: the row ends that day and a new one starts
  (the history stays true as of every day); at the same period it keeps its renewal;
- `subscription.cancelled`: the running subscription of `product` ends on `ends_on`
  (default: that day);
- `contract.renewed`: the running subscriptions (of `product`, or all) go on for another
  term: a fixed end moves to `ends_on`, or by its billing period; a new `billing_period`
  starts a new row at the current term's end. The account's renewal date on record
  becomes the one after this term (as `renewed` moves it: by the billing period).

A re-delivered start or change (same day, same values) changes nothing; any event with
an `id` is stored once (`ingest`). The rows are read into plain objects and written back
by `write`, so a batch can be planned before the write lock and planned again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast

from sqlalchemy import Table, insert, select, update
from sqlmodel import Session

from autopilot.runtime.accounts.subscriptions import (
    active_on,
    add_months,
    apply_terms,
    current_fields,
    renewal_on,
    terms_from,
)
from autopilot.runtime.contracts.event import SUBSCRIPTION_FIELDS
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import Subscription

EVENTS = frozenset(SUBSCRIPTION_FIELDS)
BOOK_EVENTS = EVENTS | {"renewed"}  # the events that read the subscriptions (a renewal: its period)
DEFAULT_PERIOD = 12  # months: an account without subscriptions renews yearly
_TABLE = cast(Table, Subscription.__table__)  # type: ignore[attr-defined]
_COLUMNS = tuple(c.name for c in _TABLE.columns if c.name != "id")


class SubscriptionEventError(ValueError):
    """An event the account's subscriptions cannot take; `field` is the event's field at
    fault and `index` the event's place in its batch (set by whoever folds the batch)."""

    def __init__(self, field: str, problem: str, index: int = 0) -> None:
        self.field, self.problem, self.index = field, problem, index
        super().__init__(f"{field}: {problem}")


@dataclass
class Book:
    """The subscriptions of the accounts a batch touches, read once each (`of`)."""

    session: Session
    today: date
    _subs: dict[str, list[Subscription]] = field(default_factory=dict)
    _stored: dict[int, dict[str, Any]] = field(default_factory=dict)  # id(row) -> as stored

    def load(self, account_ids: Iterable[str]) -> None:
        """Read the subscriptions of these accounts (in one query), unless read already."""
        cold = sorted(set(account_ids) - self._subs.keys())
        if not cold:
            return
        for a in cold:
            self._subs[a] = []
        q = select(_TABLE).where(_TABLE.c.account_id.in_(cold)).order_by(_TABLE.c.start)
        for row in self.session.connection().execute(q).mappings():
            sub = Subscription(**row)
            self._subs[sub.account_id].append(sub)
            self._stored[id(sub)] = {c: row[c] for c in _COLUMNS}

    def of(self, account_id: str) -> list[Subscription]:
        self.load([account_id])
        return self._subs[account_id]

    def period(self, account_id: str, day: date) -> int:
        """Months between the account's renewals on `day`: those of the subscription that
        renews first, else of its latest one; a year when it has none."""
        subs = self.of(account_id)
        if active := [s for s in subs if active_on(s, day)]:
            return min(active, key=lambda s: renewal_on(s, day, subs)).billing_period
        return max(subs, key=lambda s: s.start).billing_period if subs else DEFAULT_PERIOD

    def apply(self, account: Account, ev: dict[str, Any], day: date) -> None:
        """Fold one subscription or contract event (`EventIn.model_dump(exclude_none=True)`)
        of `day` into the account's rows, then its terms as of today into the account."""
        subs = self.of(account.id)
        if (end := ev.get("ends_on")) is not None and not 2000 <= end.year <= 2100:
            # Checked here, not in `EventIn`: a role that may not post events hears a 403.
            raise SubscriptionEventError("ends_on", "must be between the years 2000 and 2100")
        match ev["type"]:
            case "subscription.started":
                _start(subs, account.id, ev, day)
            case "subscription.changed":
                _change(subs, ev, day)
            case "subscription.cancelled":
                sub = _running(subs, ev["product"], day)
                end = ev.get("ends_on", day)
                if end <= sub.start:
                    raise SubscriptionEventError("ends_on", "must be after the subscription starts")
                sub.end = end
            case "contract.renewed":
                term_ends = terms_from(subs, day).renewal_date
                _renew(subs, ev, day)
                apply_terms(account, subs, self.today)
                # Renewed: the date on record is the renewal after this term, as a
                # `renewed` event moves it (until the term ends, terms today say this one).
                after = terms_from(subs, term_ends).renewal_date if term_ends else None
                if after is not None:
                    account.renewal_date = max(account.renewal_date, after)
                return
            case other:
                raise AssertionError(f"not a subscription event: {other}")
        apply_terms(account, subs, self.today)

    def write(self) -> None:
        """Store what the events changed: an UPDATE per changed row, one INSERT of the new."""
        conn = self.session.connection()
        fresh: list[Subscription] = []
        for sub in (s for subs in self._subs.values() for s in subs):
            now = {c: getattr(sub, c) for c in _COLUMNS}
            if sub.id is None:
                fresh.append(sub)
            elif changed := {c: v for c, v in now.items() if self._stored[id(sub)][c] != v}:
                conn.execute(update(_TABLE).where(_TABLE.c.id == sub.id).values(changed))
                self._stored[id(sub)] = now
        if fresh:
            ids = conn.execute(
                insert(_TABLE).returning(_TABLE.c.id, sort_by_parameter_order=True),
                [{c: getattr(s, c) for c in _COLUMNS} for s in fresh],
            ).scalars()
            for sub, i in zip(fresh, ids, strict=True):
                sub.id = i
                self._stored[id(sub)] = {c: getattr(sub, c) for c in _COLUMNS}


def _running(subs: list[Subscription], product: str, day: date) -> Subscription:
    for sub in subs:
        if sub.product == product and active_on(sub, day):
            return sub
    raise SubscriptionEventError("product", f"no running subscription of {product!r} that day")


def _start(subs: list[Subscription], account_id: str, ev: dict[str, Any], day: date) -> None:
    sub = Subscription(
        account_id=account_id,
        product=ev["product"],
        mrr=ev["mrr"],
        quantity=ev.get("quantity", 0),
        start=day,
        end=ev.get("ends_on"),
        billing_period=ev.get("billing_period", DEFAULT_PERIOD),
    )
    if sub.end is not None and sub.end <= day:
        raise SubscriptionEventError("ends_on", "must be after the day the subscription starts")
    for other in subs:
        if other.product == sub.product and (active_on(other, day) or other.start == day):
            if _same_terms(other, sub):
                return  # a re-delivery
            raise SubscriptionEventError("product", f"{sub.product!r} is already running")
    subs.append(sub)


def _same_terms(a: Subscription, b: Subscription) -> bool:
    keys = ("product", "mrr", "quantity", "start", "end", "billing_period")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def _change(subs: list[Subscription], ev: dict[str, Any], day: date) -> None:
    sub = _running(subs, ev["product"], day)
    mrr = ev.get("mrr", sub.mrr)
    quantity = ev.get("quantity", sub.quantity)
    period = ev.get("billing_period", sub.billing_period)
    if sub.start == day:  # changed the day it started (or a re-delivery): in place
        sub.mrr, sub.quantity, sub.billing_period = mrr, quantity, period
        return
    subs.append(
        Subscription(
            account_id=sub.account_id,
            product=sub.product,
            mrr=mrr,
            quantity=quantity,
            start=day,
            end=sub.end,
            billing_period=period,
        )
    )
    sub.end = day


def _renew(subs: list[Subscription], ev: dict[str, Any], day: date) -> None:
    product = ev.get("product")
    targets = [s for s in subs if active_on(s, day) and product in (None, s.product)]
    if not targets:
        raise SubscriptionEventError("product", "no running subscription to renew that day")
    ends_on: date | None = ev.get("ends_on")
    if ends_on is not None and ends_on <= day:
        raise SubscriptionEventError("ends_on", "must be after the day of the renewal")
    for sub in targets:
        period = ev.get("billing_period", sub.billing_period)
        if period == sub.billing_period:
            if ends_on is not None:
                sub.end = ends_on
            elif sub.end is not None:
                sub.end = add_months(sub.end, period)
            continue  # an open subscription renews itself at each boundary
        boundary = renewal_on(sub, day, subs)  # the current term's end: the new term's start
        if ends_on is not None and ends_on <= boundary:
            raise SubscriptionEventError("ends_on", "must be after the current term ends")
        if any(s.product == sub.product and s.start == boundary for s in subs):
            continue  # renewed onto this term already (a re-delivery)
        subs.append(
            Subscription(
                account_id=sub.account_id,
                product=sub.product,
                mrr=sub.mrr,
                quantity=sub.quantity,
                start=boundary,
                end=ends_on or (None if sub.end is None else add_months(boundary, period)),
                billing_period=period,
            )
        )
        sub.end = boundary


def refresh_terms(session: Session, today: date, *, org_id: str | None = None) -> int:
    """Every account with subscriptions (of `org_id`) set to its terms as of `today`
    (`current_fields`): its ARR and seats follow a change dated ahead, its renewal date
    moves on once passed, though no event came (the daily sweep calls this). Returns how
    many accounts changed."""
    q = select(Subscription, Account).join(Account, _TABLE.c.account_id == Account.id)  # type: ignore[arg-type]
    if org_id is not None:
        q = q.where(Account.org_id == org_id)  # type: ignore[arg-type]
    held: dict[str, tuple[Account, list[Subscription]]] = {}
    for sub, account in session.execute(q):
        held.setdefault(account.id, (account, []))[1].append(sub)
    changed = 0
    for account, subs in held.values():
        derived = current_fields(subs, today, account.renewal_date)
        if any(getattr(account, k) != v for k, v in derived.items()):
            for k, v in derived.items():
                setattr(account, k, v)
            changed += 1
    return changed
