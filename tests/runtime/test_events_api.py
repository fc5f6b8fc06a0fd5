"""POST /events: bad input is a 422 naming the field, and nothing is stored."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlmodel import Session, select

from autopilot.runtime.store.customer import AccountScore
from autopilot.runtime.store.events import Event
from tests.conftest import Stack


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "login"}, "account_id"),
        ({"account_id": "ACC", "type": "teleport"}, "type"),
        ({"account_id": "ACC", "type": "nps", "score": 11}, "score"),
        ({"account_id": "ACC", "type": "nps"}, "score"),  # nps without its score
        ({"account_id": "ACC", "type": "sentiment", "sentiment": -3}, "sentiment"),
        ({"account_id": "ACC", "type": "login", "secret": "x"}, "secret"),
        ({"account_id": "acc-9999", "type": "login"}, "account_id"),  # no such account
    ],
)
async def test_malformed_event_is_422_and_nothing_stored(stack: Stack, body: dict[str, Any], field: str) -> None:
    account, = stack.pick("smb", max_arr=50_000)
    body = {**body, "account_id": account} if body.get("account_id") == "ACC" else body
    before = stack.account(account)
    r = await stack.http.post("/events", json=body, headers=stack.headers("adam"))
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert any(field in [str(p) for p in d["loc"]] or field in d["msg"] for d in detail), detail
    with Session(stack.db) as s:
        assert s.exec(select(Event)).all() == []
    assert stack.account(account) == before


async def test_event_updates_snapshot_and_health(stack: Stack) -> None:
    account, = stack.pick("smb", max_arr=50_000)
    before = stack.account(account)
    r = await stack.http.post("/events", json={"account_id": account, "type": "ticket_opened", "priority": "P1"},
                              headers=stack.headers("adam"))
    assert r.status_code == 202 and r.json()["started"] == []  # still above the trigger threshold
    after = stack.account(account)
    assert after.p1_open == before.p1_open + 1 and after.open_tickets == before.open_tickets + 1
    # Health 2.0 rescored the account on the event: the day's rollup now holds the P1.
    with Session(stack.db) as s:
        score = s.get(AccountScore, account)
    assert score is not None and score.features["p1_90d"] >= 1 and score.factors


async def test_events_need_a_token(stack: Stack) -> None:
    account, = stack.pick("smb", max_arr=50_000)
    r = await stack.http.post("/events", json={"account_id": account, "type": "login"})
    assert r.status_code == 401
    r = await stack.http.post("/events", json={"account_id": account, "type": "login"},
                              headers={"Authorization": "Bearer cap_not-a-real-token"})
    assert r.status_code == 401
    with Session(stack.db) as s:
        assert s.exec(select(Event)).all() == []


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"occurred_at": "0001-01-01T00:00:00"}, "occurred_at"),
        ({"type": "sentiment", "sentiment": float("nan")}, "sentiment"),
        ({"type": "usage_snapshot", "active_users": 2**70}, "active_users"),
        ({"type": "payment_failed", "amount": float("inf")}, "amount"),
    ],
)
async def test_out_of_range_input_is_a_422_naming_the_field(stack: Stack, extra: dict[str, Any], field: str) -> None:
    account, = stack.pick("smb", max_arr=50_000)
    body = {"account_id": account, "type": "login", **extra}
    r = await stack.http.post("/events", content=json.dumps(body, allow_nan=True),
                              headers={**stack.headers("adam"), "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert any(field in ".".join(map(str, e["loc"])) for e in r.json()["detail"])


async def test_a_naive_occurred_at_is_read_as_utc(stack: Stack) -> None:
    account, = stack.pick("smb", max_arr=50_000)
    r = await stack.http.post("/events", json={"account_id": account, "type": "login",
                                               "occurred_at": "2026-01-05T10:00:00"}, headers=stack.headers("adam"))
    assert r.status_code == 202, r.text
    with Session(stack.db) as s:
        row = s.get(Event, r.json()["event_id"])
    assert row is not None and row.payload["occurred_at"].startswith("2026-01-05T10:00:00")


@pytest.mark.parametrize("query", ["older_than_hours=1e300", "older_than_hours=nan", "older_than_hours=inf",
                                   "offset=99999999999999999999", "min_risk=2"])
async def test_out_of_range_list_parameters_are_a_422(stack: Stack, query: str) -> None:
    r = await stack.http.get(f"/approvals?{query}", headers=stack.headers("maria"))
    assert r.status_code == 422, r.text
