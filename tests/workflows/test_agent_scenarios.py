"""Each agent's playbook on the real path (the Temporal dev server, Rego, SQLite, the SMTP
sink): its first stretch, a wait, then either the follow-up or the exit on goal. Waits
are durable timers; here a playbook day lasts a second (`playbook_wait_scale`), so the
timer fires while the test watches (the time-skipping server cannot query a sleeping run)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sqlmodel import Session, col, select
from temporalio.client import WorkflowExecutionStatus

from autopilot.runtime.accounts.ingest import Stored
from autopilot.runtime.agents.triggers import SCHEDULE_EVENT
from autopilot.runtime.contracts.run import AgentRunResult
from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.actions import AttributedRevenue
from autopilot.runtime.store.compliance import AdmtDecision
from autopilot.runtime.store.customer import AccountScore
from autopilot.runtime.store.events import Event
from tests.conftest import Stack, make_settings
from tests.tools.test_connectors import crm  # noqa: F401 - the reference CRM on loopback


@pytest.fixture
async def sk(stack_factory: Any, tmp_path: Path, crm: tuple[str, Any]) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, playbook_wait_scale=1 / 86400, crm_url=crm[0])
    async with stack_factory(settings=settings) as stack:
        yield stack


async def first_stretch(stack: Stack, wf_id: str) -> list[str]:
    """Approve whatever the run asks (owner, then a manager) until it sleeps at its wait;
    time does not skip meanwhile (nobody awaits the result)."""
    handle = stack.client.get_workflow_handle(wf_id)
    for _ in range(600):
        desc = await handle.describe()
        if desc.status != WorkflowExecutionStatus.RUNNING:
            break
        progress = await handle.query("progress")
        if progress["status"] == "waiting":
            return [o["status"] for o in progress["outcomes"]]
        r = await stack.http.get("/approvals", params={"status": "pending"}, headers=stack.headers("maria"))
        for item in r.json():
            if item["workflow_id"] == wf_id:
                await stack.approve_fully(item)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{wf_id} never reached its wait")


async def through_waits(stack: Stack, wf_id: str) -> AgentRunResult:
    handle = stack.client.get_workflow_handle(wf_id, result_type=AgentRunResult)
    return await asyncio.wait_for(handle.result(), timeout=120)


def steps(result: AgentRunResult) -> list[tuple[str, str]]:
    return [(o.step, o.status) for o in result.outcomes]


def _set(stack: Stack, account_id: str, **fields: Any) -> None:
    with Session(stack.db) as s:
        row = s.get(Account, account_id)
        assert row is not None
        for k, v in fields.items():
            setattr(row, k, v)
        s.add(row)
        s.commit()


# --- Adoption --------------------------------------------------------------------------


async def _start_adoption(stack: Stack) -> tuple[str, str]:
    account, = stack.pick("smb", max_arr=50_000)
    await stack.post_events([{"account_id": account, "type": "usage_snapshot", "active_users": 1}])
    wf_id, = await stack.post_events([{"account_id": account, "type": "feature_use", "module": "reports"}])
    assert wf_id == f"agent:adoption:{account}"
    return account, wf_id


async def test_adoption_follows_up_after_a_week_when_still_short(sk: Stack) -> None:
    account, wf_id = await _start_adoption(sk)
    first = await first_stretch(sk, wf_id)
    assert "executed" in first
    result = await through_waits(sk, wf_id)
    assert result.stretches == 2 and result.exit is None
    assert [s for s, _ in steps(result)][-1] == "follow_up"  # a week later adoption was still short


async def test_adoption_stops_when_the_target_is_met(sk: Stack) -> None:
    account, wf_id = await _start_adoption(sk)
    await first_stretch(sk, wf_id)
    seats = sk.account(account).seats_purchased
    await sk.post_events([{"account_id": account, "type": "usage_snapshot", "active_users": seats}])
    result = await through_waits(sk, wf_id)
    assert result.exit == "goal_met" and "follow_up" not in [s for s, _ in steps(result)]


# --- Renewal ---------------------------------------------------------------------------


async def test_renewal_forecasts_proposes_and_asks_for_a_meeting_without_a_reply(sk: Stack) -> None:
    account, = sk.pick("mid_market", min_arr=50_000, max_arr=240_000, severe=True)
    await sk.post_events(drop_events(sk.db, account, severe=True))  # at risk (Churn Rescue starts too)
    await sk.client.get_workflow_handle(f"agent:churn_rescue:{account}").terminate("not this test")
    _set(sk, account, renewal_date=sk.services.clock().date() + timedelta(days=90))
    wf_id, = await sk.post_events([{"account_id": account, "type": "invoice", "amount": 1000.0}])
    assert wf_id == f"agent:renewal:{account}"
    await first_stretch(sk, wf_id)
    result = await through_waits(sk, wf_id)
    names = [s for s, _ in steps(result)]
    assert names[0] == "forecast" and "proposal" in names and names[-1] == "negotiation_meeting"
    assert dict(steps(result))["forecast"] == "executed"


async def test_renewal_of_a_safe_account_writes_the_forecast_and_ends_on_its_goal(sk: Stack) -> None:
    account, = sk.pick("smb", max_arr=50_000)
    _set(sk, account, renewal_date=sk.services.clock().date() + timedelta(days=90))
    wf_id, = await sk.post_events([{"account_id": account, "type": "invoice", "amount": 1000.0}])
    await first_stretch(sk, wf_id)
    result = await through_waits(sk, wf_id)
    assert steps(result) == [("forecast", "executed")] and result.exit == "goal_met"


# --- Expansion -------------------------------------------------------------------------


async def _start_expansion(stack: Stack) -> tuple[str, str]:
    account, = stack.pick("smb", max_arr=50_000)
    seats = stack.account(account).seats_purchased
    wf_id, = await stack.post_events(
        [{"account_id": account, "type": "usage_snapshot", "active_users": seats, "seats_used": seats}]
    )
    assert wf_id == f"agent:expansion:{account}"
    return account, wf_id


async def test_expansion_ends_on_its_goal_when_the_customer_expands(sk: Stack) -> None:
    account, wf_id = await _start_expansion(sk)
    await first_stretch(sk, wf_id)
    await sk.post_events([{"account_id": account, "type": "expanded", "amount": 6000.0, "seats": 5}])
    result = await through_waits(sk, wf_id)
    assert result.exit == "goal_met" and "nudge" not in [s for s, _ in steps(result)]
    assert "opportunity" in [s for s, _ in steps(result)]
    with Session(sk.db) as s:  # the expansion's ARR is credited to the agent, once
        credit, = s.exec(select(AttributedRevenue)).all()
    assert (credit.agent, credit.account_id, credit.amount) == ("expansion", account, 6000.0)


async def test_expansion_nudges_the_owner_after_two_quiet_weeks(sk: Stack) -> None:
    account, wf_id = await _start_expansion(sk)
    await first_stretch(sk, wf_id)
    result = await through_waits(sk, wf_id)
    assert [s for s, _ in steps(result)][-1] == "nudge" and result.stretches == 2


# --- Churn Rescue ----------------------------------------------------------------------


async def test_churn_rescue_stops_when_a_person_takes_over(sk: Stack) -> None:
    account, = sk.pick("smb", max_arr=50_000)
    wf_id, = await sk.post_events(drop_events(sk.db, account))
    assert await first_stretch(sk, wf_id) == ["executed"]
    await sk.post_events([{"account_id": account, "type": "csm_takeover"}])
    result = await through_waits(sk, wf_id)
    assert result.exit == "human_took_over" and steps(result) == [("rescue_email", "executed")]


# --- Compliance ------------------------------------------------------------------------


async def test_compliance_records_decisions_and_gives_the_missing_notice(sk: Stack) -> None:
    with Session(sk.db) as s:
        sponsored = set(s.exec(select(Contact.account_id).where(Contact.role == "executive_sponsor")))
    account = next(a for a in sk.pick("smb", n=20, max_arr=50_000, strict=False) if a in sponsored)
    rescue, = await sk.post_events(drop_events(sk.db, account))
    await first_stretch(sk, rescue)
    with Session(sk.db) as s:
        sponsor = s.exec(select(Contact).where(Contact.account_id == account,
                                               Contact.role == "executive_sponsor").order_by(col(Contact.id))).first()
        assert sponsor is not None
        sponsor_id = sponsor.id
        sponsor.notice_at = None
        s.add(sponsor)
        now = sk.services.clock()
        event = Event(account_id=account, type=SCHEDULE_EVENT, occurred_at=now, received_at=now, payload={})
        s.add(event)
        s.commit()
        assert event.id is not None
        stored = Stored(event_id=event.id, account_id=account, type=SCHEDULE_EVENT, agents=["compliance"])
    started = await sk.ingest.dispatch([stored])
    result = await through_waits(sk, started[0].workflow_id)
    assert dict(steps(result)) == {"record_decisions": "executed", "pre_use_notice": "executed",
                                   "model_card": "executed"}
    with Session(sk.db) as s:
        assert s.get(Contact, sponsor_id).notice_at is not None  # type: ignore[union-attr]
        assert s.exec(select(AdmtDecision)).all() == []  # the rescue email is not a significant decision


async def until_done(stack: Stack, wf_id: str) -> AgentRunResult:
    """Through its waits to the end, approving whatever it asks on the way."""
    handle = stack.client.get_workflow_handle(wf_id, result_type=AgentRunResult)
    for _ in range(2400):
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return await handle.result()
        r = await stack.http.get("/approvals", params={"status": "pending"}, headers=stack.headers("maria"))
        for item in r.json():
            if item["workflow_id"] == wf_id:
                await stack.approve_fully(item)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{wf_id} did not finish")


async def test_churn_rescue_asks_for_human_help_after_five_quiet_days(sk: Stack) -> None:
    account, = sk.pick("smb", max_arr=50_000)
    wf_id, = await sk.post_events(drop_events(sk.db, account))
    assert await first_stretch(sk, wf_id) == ["executed"]
    result = await until_done(sk, wf_id)
    assert result.stretches == 2 and result.exit is None
    assert [s for s, _ in steps(result)] == ["rescue_email", "human_help"]
    assert dict(steps(result))["human_help"] == "executed"  # the cheapest human help, approved


async def test_churn_rescue_sends_no_follow_up_when_the_champion_replies(sk: Stack) -> None:
    account, = sk.pick("smb", max_arr=50_000)
    wf_id, = await sk.post_events(drop_events(sk.db, account))
    await first_stretch(sk, wf_id)
    await sk.post_events([{"account_id": account, "type": "email_reply"}])
    result = await until_done(sk, wf_id)
    assert [s for s, _ in steps(result)] == ["rescue_email"]


async def test_churn_rescue_ends_on_its_goal_when_the_account_recovers(sk: Stack) -> None:
    """Health 2.0 brings the churn risk back under 30 % during the wait (the daily rescore
    writes the stored score): the run wakes, sees its goal met, and asks nobody."""
    account, = sk.pick("smb", max_arr=50_000)
    wf_id, = await sk.post_events(drop_events(sk.db, account))
    await first_stretch(sk, wf_id)
    with Session(sk.db) as s:
        score = s.get(AccountScore, account)
        assert score is not None and score.risk > 0.3
        score.risk, score.health = 0.1, 88.0
        s.add(score)
        s.commit()
    result = await until_done(sk, wf_id)
    assert result.exit == "goal_met" and [s for s, _ in steps(result)] == ["rescue_email"]
