"""POST /events: bad input is a 422 naming the field, and nothing is stored."""

from __future__ import annotations

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
