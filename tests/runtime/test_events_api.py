"""POST /events: bad input is a 422 naming the field, and nothing is stored."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from autopilot.runtime.devstack.scenarios import drop_events
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
    # Stored with its zone: the time, read as UTC (a naive time would lose that).
    assert row is not None and row.payload["occurred_at"] in ("2026-01-05T10:00:00Z", "2026-01-05T10:00:00+00:00")


@pytest.mark.parametrize("query", ["older_than_hours=1e300", "older_than_hours=nan", "older_than_hours=inf",
                                   "offset=99999999999999999999", "min_risk=2"])
async def test_out_of_range_list_parameters_are_a_422(stack: Stack, query: str) -> None:
    r = await stack.http.get(f"/approvals?{query}", headers=stack.headers("maria"))
    assert r.status_code == 422, r.text


async def test_a_retried_post_with_the_same_idempotency_key_counts_once(stack: Stack) -> None:
    from autopilot.runtime.store.accounts import Account

    account, = stack.pick("smb", max_arr=50_000)
    before = stack.account(account).logins_30d
    headers = {**stack.headers("adam"), "Idempotency-Key": "crm-sync-42"}
    body = {"account_id": account, "type": "login", "logins": 3}
    first = await stack.http.post("/events", json=body, headers=headers)
    again = await stack.http.post("/events", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["event_id"] == again.json()["event_id"]
    with Session(stack.db) as s:
        rows = s.exec(select(Event).where(Event.account_id == account, Event.type == "login")).all()
        acc = s.get(Account, account)
    assert len(rows) == 1 and acc is not None and acc.logins_30d == before + 3


async def test_an_event_stored_while_temporal_is_unreachable_is_dispatched_later_once(stack: Stack) -> None:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from autopilot.runtime.accounts.ingest import Ingest
    from autopilot.runtime.contracts.event import EventIn
    from autopilot.runtime.store.events import EventDispatch

    # A client whose every start fails (a namespace that does not exist): Temporal "down".
    dead = await Client.connect(stack.client.service_client.config.target_host, namespace="nowhere",
                                data_converter=pydantic_data_converter)
    down = Ingest(stack.db, dead, stack.services.specs, task_queue=stack.task_queue, policy=stack.services.policy)
    account, = stack.pick("smb", max_arr=50_000)
    stored = []
    for ev in drop_events(stack.db, account):
        stored += down.store([EventIn.model_validate(ev)], org_id="demo")
    assert await down.dispatch(stored) == []  # nothing started, nothing raised
    with Session(stack.db) as s:
        pending = s.exec(select(EventDispatch).where(EventDispatch.account_id == account)).all()
    assert len(pending) == 1 and pending[0].dispatched_at is None and pending[0].last_error
    # Temporal is back: the dispatcher starts the run; a second pass starts nothing more.
    assert await stack.ingest.redispatch(older_than=timedelta(0)) == 1
    assert await stack.ingest.redispatch(older_than=timedelta(0)) == 0
    result = await stack.run_result(f"agent:churn_rescue:{account}")
    assert [o.status for o in result.outcomes] == ["executed"] and len(stack.mails()) == 1
