"""Connectors against real loopback servers (the reference CRM, a webhook), the
adoption agent's reversible writes, forced retries, and `runs rollback`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlmodel import Session, select

from autopilot.runtime.devstack.crm import create_crm_app
from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.execution.rollback import rollback
from autopilot.runtime.store.audit import AuditEntry
from autopilot.runtime.store.outbox import CsmTask, InAppMessage
from autopilot.tools.builtin import registry
from autopilot.tools.registry import ToolContext
from tests.conftest import Stack, free_port, make_settings, wait_for
from tests.loopback import webhook_server
from tests.workflows.test_agent_run import _FailAfterSideEffect


@pytest.fixture
async def crm() -> AsyncIterator[tuple[str, Any]]:
    app = create_crm_app()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, what="the reference CRM")
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    await task


def adoption_events(account: str) -> list[dict[str, Any]]:
    return [{"account_id": account, "type": "usage_snapshot", "active_users": 1},
            {"account_id": account, "type": "feature_use", "module": "reports"}]


def adoption_account(stack: Stack) -> str:
    """A healthy account with seats to spare: one nearly full would also start Expansion."""
    return next(a for a in stack.pick("smb", n=20, strict=False, max_arr=50_000)
                if stack.account(a).seats_used < 0.9 * stack.account(a).seats_purchased)


async def _adoption_run(stack: Stack) -> tuple[str, str]:
    account = adoption_account(stack)
    started = await stack.post_events(adoption_events(account))
    assert started == [f"agent:adoption:{account}"], started
    return account, started[0]


async def test_adoption_writes_then_rollback_undoes_them(stack_factory: Any, tmp_path: Path, crm: Any) -> None:
    url, app = crm
    async with stack_factory(settings=make_settings(tmp_path, crm_url=url)) as stack:
        account, wf = await _adoption_run(stack)
        result = await stack.run_result(wf)
        assert sorted((o.tool, o.status) for o in result.outcomes) == [
            ("create_csm_task", "executed"), ("crm_update_field", "executed"), ("send_in_app_message", "executed")]
        with Session(stack.db) as s:
            msg, = s.exec(select(InAppMessage).where(InAppMessage.account_id == account)).all()
            task, = s.exec(select(CsmTask).where(CsmTask.account_id == account)).all()
        assert msg.status == "scheduled" and task.status == "open" and task.assignee == stack.owner(account)
        assert app.state.accounts[account]["fields"]["adoption_status"].startswith("at risk")
        writes = len(app.state.writes)

        preview = await rollback(stack.services, wf, actor="maria", dry_run=True)
        assert preview["undone"] == 3 and {s["status"] for s in preview["steps"]} == {"would_compensate"}
        crm_step = next(s for s in preview["steps"] if s["tool"] == "crm_update_field")
        assert crm_step["preview"]["preview"] == {"account_id": account, "field": "adoption_status",
                                                  "from": app.state.accounts[account]["fields"]["adoption_status"],
                                                  "to": None}
        assert len(app.state.writes) == writes  # a dry run changes nothing

        done = await rollback(stack.services, wf, actor="maria")
        assert done["undone"] == 3 and {s["status"] for s in done["steps"]} == {"compensated"}
        with Session(stack.db) as s:
            assert s.get(InAppMessage, msg.id).status == "cancelled"  # type: ignore[union-attr]
            assert s.get(CsmTask, task.id).status == "cancelled"  # type: ignore[union-attr]
            steps = s.exec(select(AuditEntry).where(AuditEntry.step == "compensate")).all()
            assert len(steps) == 3 and {e.actor for e in steps} == {"maria"}
        assert app.state.accounts[account]["fields"]["adoption_status"] is None
        # Again: each compensation ran exactly once (same keys), the CRM saw no new write.
        again = await rollback(stack.services, wf, actor="maria")
        assert {s["status"] for s in again["steps"]} == {"compensated"}
        assert len(app.state.writes) == writes + 1


async def test_email_is_reported_irreversible(stack: Stack) -> None:
    account, = stack.pick("smb", max_arr=50_000)
    wf, = await stack.post_events(drop_events(stack.db, account))
    await stack.run_result(wf)
    out = await rollback(stack.services, wf, actor="maria")
    assert out["irreversible"] == 1 and out["steps"][0]["status"] == "irreversible"
    assert len(stack.mails()) == 1


async def test_forced_retries_never_repeat_a_write(stack_factory: Any, tmp_path: Path, crm: Any) -> None:
    url, app = crm
    chaos = _FailAfterSideEffect()
    async with stack_factory(settings=make_settings(tmp_path, crm_url=url),
                             worker_kwargs={"interceptors": [chaos]}) as stack:
        account, wf = await _adoption_run(stack)
        result = await stack.run_result(wf)
        assert chaos.attempts == [1, 2] * 3  # every execute lost its completion once
        assert {o.status for o in result.outcomes} == {"executed"}
        assert len(app.state.writes) == 1
        with Session(stack.db) as s:
            assert len(s.exec(select(InAppMessage).where(InAppMessage.account_id == account)).all()) == 1
            assert len(s.exec(select(CsmTask).where(CsmTask.account_id == account)).all()) == 1


async def test_crm_dedupes_on_the_idempotency_key(tmp_path: Path, crm: Any) -> None:
    url, app = crm
    ctx = ToolContext(idempotency_key="run/1/0", dry_run=False, settings=make_settings(tmp_path, crm_url=url))
    args = {"account_id": "acc-x", "field": "forecast", "value": 0.8}
    first = await asyncio.to_thread(registry.call, "crm_update_field", args, ctx)
    second = await asyncio.to_thread(registry.call, "crm_update_field", {**args, "value": 0.1}, ctx)
    assert first["undo"] == second["undo"] == {"account_id": "acc-x", "field": "forecast", "value": None}
    assert len(app.state.writes) == 1 and app.state.accounts["acc-x"]["fields"]["forecast"] == 0.8


async def test_slack_webhook_dry_run_and_post(tmp_path: Path) -> None:
    with webhook_server() as hook:
        settings = make_settings(tmp_path, slack_webhook_url=hook.url)
        dry = await asyncio.to_thread(registry.call, "post_slack", {"text": "hi"},
                                      ToolContext(idempotency_key="k", dry_run=True, settings=settings))
        assert dry["preview"]["json"] == {"text": "hi"} and hook.posts == []
        await asyncio.to_thread(registry.call, "post_slack", {"text": "hi"},
                                ToolContext(idempotency_key="k", dry_run=False, settings=settings))
        assert hook.posts == [{"text": "hi"}] and hook.headers[0]["Idempotency-Key"] == "k"


async def test_renewal_writes_the_forecast_back_and_rollback_restores_it(stack_factory: Any, tmp_path: Path,
                                                                          crm: Any) -> None:
    from datetime import timedelta

    from autopilot.runtime.store.accounts import Account
    from tests.conftest import NOW

    url, app = crm
    async with stack_factory(settings=make_settings(tmp_path, crm_url=url)) as stack:
        with Session(stack.db) as s:
            account = s.exec(select(Account).where(Account.renewal_date <= NOW.date() + timedelta(days=120),
                                                   Account.arr < 250_000).order_by(Account.id)).first()
            assert account is not None
        wf, = await stack.post_events([{"account_id": account.id, "type": "invoice", "amount": 1200.0}])
        assert wf == f"agent:renewal:{account.id}"
        result = await stack.run_result(wf)
        assert [(o.tool, o.status) for o in result.outcomes] == [("crm_write_forecast", "executed")]
        from autopilot.runtime.store.customer import AccountScore

        with Session(stack.db) as s:
            score = s.get(AccountScore, account.id)
        assert score is not None
        forecast = app.state.accounts[account.id]["forecast"]
        assert forecast["renewal_probability"] == pytest.approx(round(1 - score.risk, 3), abs=2e-3)
        assert forecast["forecast_arr"] == pytest.approx(account.arr * forecast["renewal_probability"], rel=1e-3)
        undone = await rollback(stack.services, wf, actor="maria")
        assert [s["status"] for s in undone["steps"]] == ["compensated"]
        assert app.state.accounts[account.id]["forecast"] is None
