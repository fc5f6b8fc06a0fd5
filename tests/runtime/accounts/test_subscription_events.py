"""Subscription and contract events through the real API (SQLite and Postgres): they
write the account's subscriptions as of the day they happened, the account's ARR, seats,
renewal date and start follow; a renewal moves by the billing period; a re-delivered
event is stored once; an event the subscriptions cannot take is a 422 naming the field;
and the events agree with a subscriptions history of the same contract."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, func, select

from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.accounts.subscriptions import (
    Terms,
    add_months,
    import_subscriptions,
    terms_as_of,
)
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import Subscription
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.events import Event
from tests.conftest import NOW, Stack
from tests.runtime.test_cli import arun_cli, stack_env

TODAY = NOW.date()
ACCOUNTS = 12  # a small portfolio: these tests need a few accounts, not a book


def _day(days_ago: int) -> date:
    return TODAY - timedelta(days=days_ago)


def _next_boundary(start: date, months: int, after: date) -> date:
    """The first `months` boundary counted from `start` that is after `after`."""
    k = 1
    while add_months(start, k * months) <= after:
        k += 1
    return add_months(start, k * months)


async def _post(stack: Stack, account: str, kind: str, on: date | None, **fields: Any) -> httpx.Response:  # fmt: skip
    body: dict[str, Any] = {"account_id": account, "type": kind, **fields}
    if on is not None:
        body["occurred_at"] = f"{on.isoformat()}T12:00:00+00:00"
    return await stack.http.post("/events", json=body, headers=stack.headers("adam"))


def _terms(stack: Stack, account: str, day: date) -> Terms:
    with Session(stack.db) as s:
        return terms_as_of(s, account, day)


async def test_subscription_events_set_the_terms_as_of_their_day(stack_factory) -> None:  # type: ignore[no-untyped-def]
    async with stack_factory(accounts=ACCOUNTS) as stack:
        account, start, change = "acc-0001", _day(100), _day(40)
        r = await _post(stack, account, "subscription.started", start, product="team", mrr=1000, quantity=10, billing_period=1)  # fmt: skip
        assert r.status_code == 202, r.text
        r = await _post(stack, account, "subscription.changed", change, product="team", mrr=2000, quantity=20)  # fmt: skip
        assert r.status_code == 202, r.text
        # Before the change the old terms, from its day the new ones; the seat change
        # mid-month keeps the monthly renewal counted from the start.
        assert _terms(stack, account, change - timedelta(days=1)) == Terms(
            12_000, 10, _next_boundary(start, 1, change - timedelta(days=1)), start
        )
        assert _terms(stack, account, change) == Terms(
            24_000, 20, _next_boundary(start, 1, change), start
        )
        assert _terms(stack, account, start - timedelta(days=1)).arr == 0
        row = stack.account(account)
        assert (row.arr, row.seats_purchased, row.started_on) == (24_000, 20, start)
        assert row.renewal_date == _next_boundary(start, 1, TODAY)
        # A live change (now): the account and what agents see follow at once.
        r = await _post(stack, account, "subscription.changed", None, product="team", quantity=25)
        assert r.status_code == 202, r.text
        with Session(stack.db) as s:
            snapshot = get_snapshot(s, account_id=account, today=TODAY)
        assert snapshot is not None
        assert (snapshot.arr, snapshot.seats_purchased) == (24_000, 25)
        assert snapshot.renewal_date == _next_boundary(start, 1, TODAY)
        assert _terms(stack, account, TODAY - timedelta(days=1)).seats == 20
        # Cancelled at the end of this month: active until then, nothing after.
        end = _next_boundary(start, 1, TODAY)
        r = await _post(stack, account, "subscription.cancelled", None, product="team", ends_on=end.isoformat())  # fmt: skip
        assert r.status_code == 202, r.text
        assert _terms(stack, account, end - timedelta(days=1)).seats == 25
        assert _terms(stack, account, end) == Terms(0, 0, None, start)


@pytest.mark.parametrize("kind", ["renewed", "contract.renewed"])
async def test_a_renewal_moves_by_the_billing_period(stack_factory, kind: str) -> None:  # type: ignore[no-untyped-def]
    async with stack_factory(accounts=ACCOUNTS) as stack:
        expected: dict[str, date] = {}
        for account, period in (("acc-0002", 1), ("acc-0003", 6), ("acc-0004", None)):
            if period is not None:
                r = await _post(stack, account, "subscription.started", _day(10), product="p", mrr=100, billing_period=period)  # fmt: skip
                assert r.status_code == 202, r.text
            before = stack.account(account).renewal_date
            if kind == "contract.renewed" and period is None:
                r = await _post(stack, account, kind, _day(2))
                assert r.status_code == 422  # nothing to renew: no subscription
                continue
            r = await _post(stack, account, kind, _day(2))
            assert r.status_code == 202, r.text
            after = stack.account(account).renewal_date
            months = period or 12  # no subscription on record: a year
            if period is not None:
                assert before == add_months(_day(10), period)  # the first term's end
            # `renewed` moves the date on record; a contract's next term is counted
            # from its start (the same date but for a month's last days).
            moved = add_months(before, months) if kind == "renewed" else add_months(_day(10), 2 * months)  # fmt: skip
            assert after == moved, (account, period)
            expected[account] = after
        # What agents see keeps the renewal on record until it has passed.
        with Session(stack.db) as s:
            snapshot = get_snapshot(s, account_id="acc-0002", today=TODAY)
        assert snapshot is not None and snapshot.renewal_date == expected["acc-0002"]


async def test_a_redelivered_event_is_stored_once(stack_factory) -> None:  # type: ignore[no-untyped-def]
    async with stack_factory(accounts=ACCOUNTS) as stack:
        account, start = "acc-0005", _day(30)
        end = add_months(start, 12)
        started = {"product": "suite", "mrr": 500, "quantity": 5, "ends_on": end.isoformat(), "id": "evt-1"}  # fmt: skip
        first = await _post(stack, account, "subscription.started", start, **started)
        again = await _post(stack, account, "subscription.started", start, **started)
        assert first.status_code == again.status_code == 202, again.text
        assert again.json()["event_id"] == first.json()["event_id"] and again.json()["again"]
        renewal = {"id": "evt-2"}
        for _ in range(2):
            r = await _post(stack, account, "contract.renewed", _day(3), **renewal)
            assert r.status_code == 202, r.text
        with Session(stack.db) as s:
            events = s.exec(select(func.count()).select_from(Event).where(Event.account_id == account)).one()  # fmt: skip
            subs = s.exec(select(Subscription).where(Subscription.account_id == account)).all()
        assert events == 2
        assert [(x.product, x.start, x.end) for x in subs] == [
            ("suite", start, add_months(end, 12))
        ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "subscription.started", "product": "p"}, "mrr"),
        (
            {"type": "subscription.started", "product": "p", "mrr": 1, "billing_period": 7},
            "billing_period",
        ),
        ({"type": "subscription.started", "product": "p", "mrr": -1}, "mrr"),
        ({"type": "subscription.changed", "mrr": 5}, "product"),
        ({"type": "subscription.changed", "product": "base"}, "quantity"),  # nothing to change
        (
            {"type": "subscription.changed", "product": "other", "quantity": 3},
            "product",
        ),  # not running
        (
            {"type": "subscription.started", "product": "base", "mrr": 99},
            "product",
        ),  # running already
        ({"type": "subscription.cancelled", "product": "base", "ends_on": "2001-01-01"}, "ends_on"),
        ({"type": "subscription.cancelled", "product": "base", "ends_on": "1999-01-01"}, "ends_on"),
        ({"type": "contract.renewed", "product": "other"}, "product"),
    ],
)
async def test_a_bad_subscription_event_is_422_naming_the_field(stack_factory, body: dict[str, Any], field: str) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    async with stack_factory(accounts=ACCOUNTS) as stack:
        account = "acc-0006"
        r = await _post(stack, account, "subscription.started", _day(50), product="base", mrr=10, quantity=1)  # fmt: skip
        assert r.status_code == 202, r.text
        before = stack.account(account)
        with Session(stack.db) as s:
            subs_before = s.exec(select(Subscription)).all()
        r = await stack.http.post(
            "/events",
            json={"account_id": account, "occurred_at": f"{_day(5)}T09:00:00Z", **body},
            headers=stack.headers("adam"),
        )
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert any(field in [str(p) for p in d["loc"]] or field in d["msg"] for d in detail), detail
        with Session(stack.db) as s:
            assert s.exec(select(func.count()).select_from(Event)).one() == 1
            assert s.exec(select(Subscription)).all() == subs_before
        assert stack.account(account) == before


async def test_events_and_a_subscriptions_history_agree_on_the_terms(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    """The same contract, once as a subscriptions file (the history import's) and once
    as events: the same terms on every day, the same account fields."""
    start, upgrade, cancel = _day(400), _day(250), _day(20)
    path = tmp_path / "subscriptions.csv"
    path.write_text(
        "account_id,product,mrr,quantity,start,end,billing_period\n"
        f"acc-0007,team,800,8,{start},{upgrade},3\n"
        f"acc-0007,team,1200,12,{upgrade},{cancel},3\n"
        f"acc-0007,addon,50,0,{_day(100)},,6\n"
    )
    async with stack_factory(accounts=ACCOUNTS) as stack:
        with transaction(stack.db, writes=True) as session:
            import_subscriptions(session, path, org_id="demo", today=TODAY)
        events = [
            (
                "subscription.started",
                start,
                {"product": "team", "mrr": 800, "quantity": 8, "billing_period": 3},
            ),
            ("subscription.changed", upgrade, {"product": "team", "mrr": 1200, "quantity": 12}),
            (
                "subscription.started",
                _day(100),
                {"product": "addon", "mrr": 50, "billing_period": 6},
            ),
            ("subscription.cancelled", cancel, {"product": "team"}),
        ]
        for kind, on, fields in events:
            r = await _post(stack, "acc-0008", kind, on, **fields)
            assert r.status_code == 202, r.text
        for back in range(0, 420, 3):
            day = _day(back)
            assert _terms(stack, "acc-0007", day) == _terms(stack, "acc-0008", day), day
        fields = ("arr", "seats_purchased", "renewal_date", "started_on")
        a, b = stack.account("acc-0007"), stack.account("acc-0008")
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
        with Session(stack.db) as s:
            ids = ("acc-0007", "acc-0008")
            n = s.exec(select(func.count()).select_from(Subscription).where(col(Subscription.account_id).in_(ids))).one()  # fmt: skip
        assert n == 6


async def test_a_passed_renewal_moves_on_in_the_snapshot_and_at_the_sweep(stack_factory) -> None:  # type: ignore[no-untyped-def]
    async with stack_factory(accounts=ACCOUNTS) as stack:
        account, start = "acc-0009", _day(70)
        r = await _post(stack, account, "subscription.started", start, product="p", mrr=10, billing_period=1)  # fmt: skip
        assert r.status_code == 202, r.text
        with transaction(stack.db, writes=True) as s:  # as the store held it a while ago
            row = s.get(Account, account)
            assert row is not None
            row.renewal_date, row.arr = add_months(start, 1), 0
        # What agents see is as of today already; the daily sweep writes it down.
        with Session(stack.db) as s:
            snapshot = get_snapshot(s, account_id=account, today=TODAY)
        assert snapshot is not None
        assert (snapshot.renewal_date, snapshot.arr) == (_next_boundary(start, 1, TODAY), 120)
        await stack.ingest.sweep(TODAY, agents=[])
        row = stack.account(account)
        assert (row.renewal_date, row.arr) == (_next_boundary(start, 1, TODAY), 120)


async def test_events_import_takes_subscription_events_once_and_names_a_bad_line(stack_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    async with stack_factory(accounts=ACCOUNTS) as stack:
        account, start = "acc-0010", _day(60)
        started = {"account_id": account, "type": "subscription.started", "id": "s-1", "product": "p", "mrr": 300, "quantity": 3, "occurred_at": f"{start}T08:00:00Z"}  # fmt: skip
        changed = {"account_id": account, "type": "subscription.changed", "id": "s-2", "product": "p", "quantity": 4, "occurred_at": f"{_day(30)}T08:00:00Z"}  # fmt: skip
        path = tmp_path / "events.jsonl"
        path.write_text("\n".join(json.dumps(e) for e in (started, changed, started)))
        for imported, again in ((2, 1), (0, 3)):  # a re-run is all re-deliveries
            proc = await arun_cli("events", "import", str(path), "--json", env=stack_env(stack))
            assert proc.returncode == 0, proc.stdout + proc.stderr
            out = json.loads(proc.stdout)
            assert (out["imported"], out["again"]) == (imported, again)
        assert _terms(stack, account, TODAY) == Terms(3600, 4, _next_boundary(start, 12, TODAY), start)  # fmt: skip
        bad = {**changed, "id": "s-3", "product": "q"}
        path.write_text(json.dumps(bad) + "\n")
        proc = await arun_cli("events", "import", str(path), "--json", env=stack_env(stack))
        assert proc.returncode == 2 and f"{path}:1: product:" in json.loads(proc.stdout)["error"]
