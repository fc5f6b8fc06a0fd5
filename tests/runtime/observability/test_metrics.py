"""GET /metrics after real runs: counters with the right labels and values, and the
gauges read from the store (approvals pending and their age, spend against budget)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

from sqlmodel import Session, func, select
from temporalio.client import WorkflowExecutionStatus

from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.contracts.tool import ToolCall
from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.execution.executor import execute_once
from autopilot.runtime.ledger.spend import segment_spend
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import PolicyDecisionRecord
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.tools.registry import ToolNotGranted
from tests.conftest import Stack, make_settings, wait_for_async
from tests.runtime.observability.conftest import scrape, value

AGENT = "churn_rescue"


def decisions(stack: Stack, outcome: str) -> int:
    with Session(stack.db) as s:
        q = select(func.count()).where(PolicyDecisionRecord.outcome == outcome)
        return int(s.exec(q).one())


async def test_metrics_count_a_run_its_decisions_tools_and_events(
    stack_factory: Any, tmp_path: Path, database_url: str
) -> None:
    # Playbook waits squeezed to milliseconds: the run goes through its continue-as-new
    # stretches to its end (one run started, one finished).
    settings = make_settings(tmp_path, playbook_wait_scale=1e-6).model_copy(
        update={"database_url": database_url}
    )
    async with stack_factory(settings=settings) as stack:
        await _run_and_scrape(stack)


async def _run_and_scrape(stack: Stack) -> None:
    before = await scrape(stack.http)
    (account,) = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    events = drop_events(stack.db, account)
    (wf_id,) = await stack.post_events(events)
    await stack.pending_for(account)

    # While the item waits: one pending for the account's organisation, aged by the clock.
    org = stack.account(account).org_id
    waiting = await scrape(stack.http)
    assert value(waiting, "autopilot_approvals_pending", org=org) == 1
    assert value(waiting, "autopilot_approvals_pending_oldest_age_seconds", org=org) >= 0

    handle = stack.client.get_workflow_handle(wf_id)

    async def finished() -> bool:
        """Approve whatever the run asks, until it ends (every stretch of its playbook)."""
        items = (await stack.http.get("/approvals", headers=stack.headers("maria"))).json()
        for item in items:
            if item["account_id"] == account:
                await stack.approve_fully(item)
        return (await handle.describe()).status != WorkflowExecutionStatus.RUNNING

    await wait_for_async(finished, timeout=60, what=f"{wf_id} to finish")
    result = await stack.run_result(wf_id, through_waits=True)
    assert [o.status for o in result.outcomes][:2] == ["executed", "executed"]
    after = await scrape(stack.http)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("autopilot_runs_started_total", agent=AGENT) == 1
    assert delta("autopilot_runs_finished_total", agent=AGENT, outcome="completed") == 1
    gated = decisions(stack, "require_approval")
    assert gated >= 2
    assert (
        delta("autopilot_policy_decisions_total", agent=AGENT, outcome="require_approval") == gated
    )
    assert delta("autopilot_policy_decisions_total", agent=AGENT, outcome="allow") == decisions(
        stack, "allow"
    )
    assert delta("autopilot_gate_latency_seconds_count", outcome="require_approval") == gated
    with Session(stack.db) as s:
        done = Counter(r.tool for r in s.exec(select(ToolCallRecord)) if r.status == "done")
    assert done["send_email"] >= 1 and done["send_offer"] == 1
    for tool, n in done.items():
        assert delta("autopilot_tool_calls_total", tool=tool, outcome="done") == n
    assert delta("autopilot_events_ingested_total") == len(events)
    assert value(after, "autopilot_approvals_pending", org=org) == 0

    # Spend against budget: the ledger's figure and the policy's, by segment.
    with Session(stack.db) as s:
        ids = list(s.exec(select(Account.id).where(Account.org_id == org)))
        spent = segment_spend(s, account_ids=ids, now=stack.services.clock())
    budget = read_limits(stack.services.policy).budget["enterprise"].segment_quarter_budget
    assert spent["enterprise"] > 0
    assert (
        value(after, "autopilot_spend_quarter", org=org, segment="enterprise")
        == spent["enterprise"]
    )
    assert value(after, "autopilot_budget_quarter", org=org, segment="enterprise") == budget


async def test_tool_errors_are_counted_by_code(stack: Stack) -> None:
    before = await scrape(stack.http)
    call = ToolCall(tool="send_email", args={}, idempotency_key="k/1", granted=[])
    try:
        execute_once(stack.db, stack.services.tools, call, None)
    except ToolNotGranted as err:
        code = err.code
    else:
        raise AssertionError("an ungranted tool ran")
    after = await scrape(stack.http)
    labels = {"tool": "send_email", "code": code}
    assert (
        value(after, "autopilot_tool_errors_total", **labels)
        - value(before, "autopilot_tool_errors_total", **labels)
        == 1
    )


async def test_metrics_need_an_admin_when_not_public(stack: Stack) -> None:
    assert stack.settings.metrics_public  # the default: Prometheus scrapes without a token
    await scrape(stack.http)
    stack.services.settings = stack.settings.model_copy(update={"metrics_public": False})
    assert (await stack.http.get("/metrics")).status_code == 401
    assert (await stack.http.get("/metrics", headers=stack.headers("maria"))).status_code == 403
    await scrape(stack.http, **stack.headers("adam"))


async def test_events_ingested_counts_every_event_of_a_batch(stack: Stack) -> None:
    before = await scrape(stack.http)
    (account,) = stack.pick("smb", max_arr=50_000)
    batch = [EventIn.model_validate(ev) for ev in drop_events(stack.db, account)]
    assert len(batch) > 1
    await asyncio.to_thread(stack.ingest.store, batch)  # one import batch, no dispatch
    after = await scrape(stack.http)
    assert value(after, "autopilot_events_ingested_total") - value(
        before, "autopilot_events_ingested_total"
    ) == len(batch)
