"""Accounts and cost to retain through the API and the CLI, on a full stack: an
executed action books its cost once; scoping by book and organisation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.store.customer import CostEntry
from autopilot.runtime.devstack.seed import seed_portfolio
from tests.conftest import NOW, Stack
from tests.runtime.test_cli import arun_cli


async def test_account_view_is_explained_and_scoped(stack: Stack) -> None:
    (account,) = stack.pick("smb", max_arr=50_000)
    owner = stack.owner(account)
    r = await stack.http.get(f"/accounts/{account}", headers=stack.headers(owner))
    assert r.status_code == 200, r.text
    view = r.json()
    h = view["health"]
    assert h["baseline"] + sum(f["contribution"] for f in h["factors"]) == pytest.approx(
        h["health"], abs=1e-6
    )
    assert view["optimizer"]["best"]["total_cost"] <= view["optimizer"]["limits"]["budget"]
    other = next(u for u in ("alice", "bob", "chen", "dana", "emeka") if u != owner)
    assert (
        await stack.http.get(f"/accounts/{account}", headers=stack.headers(other))
    ).status_code == 404
    seed_portfolio(stack.db, n=10, today=NOW.date(), org_id="globex", prefix="glx")
    assert (
        await stack.http.get(f"/accounts/{account}", headers=stack.headers("globex.maria"))
    ).status_code == 404
    assert (
        await stack.http.get("/accounts/glx-0001", headers=stack.headers("globex.maria"))
    ).status_code == 200
    assert (await stack.http.get("/metrics/cbr", headers=stack.headers(owner))).status_code == 403


async def test_executed_action_books_its_cost_once_and_cbr_by_segment(stack: Stack) -> None:
    (account,) = stack.pick("smb", max_arr=50_000)
    before = {
        r["segment"]: r
        for r in (await stack.http.get("/metrics/cbr", headers=stack.headers("maria"))).json()[
            "rows"
        ]
    }
    (wf,) = await stack.post_events(drop_events(stack.db, account))
    result = await stack.run_result(wf)
    assert [o.status for o in result.outcomes] == ["executed"]
    from sqlmodel import Session, select

    with Session(stack.db) as s:
        booked = s.exec(
            select(CostEntry).where(CostEntry.account_id == account, CostEntry.agent != None)
        ).all()  # noqa: E711
        assert len(booked) == 1 and booked[0].agent == "churn_rescue" and booked[0].action_key
    after = {
        r["segment"]: r
        for r in (await stack.http.get("/metrics/cbr", headers=stack.headers("maria"))).json()[
            "rows"
        ]
    }
    assert set(after) == {"enterprise", "mid_market", "smb", "tech_touch"}
    assert after["smb"]["total_cost"] == pytest.approx(
        before["smb"]["total_cost"] + booked[0].amount
    )
    for row in after.values():
        assert row["cbr"] == pytest.approx(row["total_cost"] / row["retained_arr"], abs=1e-4)
    by_agent = (
        await stack.http.get("/metrics/cbr?by=agent", headers=stack.headers("maria"))
    ).json()["rows"]
    assert [r["agent"] for r in by_agent if r["agent"] == "churn_rescue"] == ["churn_rescue"]


async def test_cli_accounts_show_and_metrics_cbr(stack: Stack, tmp_path: Path) -> None:
    env = {
        "AUTOPILOT_DATA_DIR": str(stack.settings.data_dir),
        "DATABASE_URL": stack.settings.db_url,
    }
    r = await arun_cli("accounts", "show", "acc-0001", "--json", env=env)
    assert r.returncode == 0, r.stderr
    view = json.loads(r.stdout)
    h = view["health"]
    assert round(h["baseline"] + sum(f["contribution"] for f in h["factors"]), 6) == pytest.approx(
        h["health"]
    )
    r = await arun_cli("metrics", "cbr", "--by", "segment", "--json", env=env)
    rows = json.loads(r.stdout)["rows"]
    assert r.returncode == 0 and {x["segment"] for x in rows} == {
        "enterprise",
        "mid_market",
        "smb",
        "tech_touch",
    }
    r = await arun_cli("metrics", "cbr", "--by", "segment", env=env)
    assert r.returncode == 0 and "enterprise" in r.stdout and "%" in r.stdout
    r = await arun_cli("accounts", "show", "nope", "--json", env=env)
    assert r.returncode != 0 and json.loads(r.stdout)["ok"] is False


async def test_early_warnings_reach_the_owner_and_nobody_else(stack: Stack) -> None:
    from datetime import timedelta

    from sqlmodel import Session, select

    from autopilot.runtime.accounts.fold import on_event
    from autopilot.runtime.approvals.notify import send_alert_digest
    from autopilot.runtime.store.accounts import Account
    from autopilot.runtime.store.customer import RiskAlert

    with Session(stack.db) as s:
        before = {a.account_id for a in s.exec(select(RiskAlert))}
        account = next(
            a for a in s.exec(select(Account).order_by(Account.id)) if a.id not in before
        )
        account.seats_used = account.seats_purchased // 5
        for d in range(14):
            at = NOW + timedelta(days=d, hours=1)
            on_event(
                s,
                account,
                {"type": "usage_snapshot", "active_users": 0, "seats_used": account.seats_used},
                at=at,
            )
            on_event(s, account, {"type": "ticket_opened", "priority": "P1"}, at=at)
            on_event(s, account, {"type": "sentiment", "sentiment": -0.9}, at=at)
        s.commit()
        account_id = account.id
    owner = stack.owner(account_id)
    other = next(u for u in ("alice", "bob", "chen", "dana", "emeka") if u != owner)
    mine = (
        await stack.http.get("/alerts", params={"hours": 24 * 30}, headers=stack.headers(owner))
    ).json()
    assert [a["account_id"] for a in mine if a["account_id"] == account_id] == [account_id]
    assert mine[0]["reasons"] and mine[0]["risk"] >= mine[0]["threshold"]
    theirs = (
        await stack.http.get("/alerts", params={"hours": 24 * 30}, headers=stack.headers(other))
    ).json()
    assert account_id not in {a["account_id"] for a in theirs}
    sent = send_alert_digest(stack.services, org_id="demo", since=NOW)
    assert sent[owner] >= 1 and other not in sent and "maria" in sent
    mails = [m for m in stack.mails() if "early warning" in m.subject]
    assert {m.rcpt_to for m in mails} >= {f"{owner}@demo.example", "maria@demo.example"}
    assert any(account_id in m.body for m in mails if m.rcpt_to == f"{owner}@demo.example")


async def test_the_manager_view_and_metrics_cbr_show_one_cbr(stack: Stack) -> None:
    from autopilot.runtime.approvals.metrics import manager_view

    (account,) = stack.pick("smb", max_arr=50_000)
    (wf,) = await stack.post_events(drop_events(stack.db, account))
    await stack.run_result(wf)
    api = (await stack.http.get("/metrics/cbr", headers=stack.headers("maria"))).json()["rows"]
    view = manager_view(stack.services, org_id="demo", now=stack.services.clock())
    assert dict(view["cbr_by_segment"]) == {r["segment"]: r["cbr"] for r in api}
    assert all(cbr is not None and cbr > 0 for _, cbr in view["cbr_by_segment"])
