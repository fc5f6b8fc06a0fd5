"""Durable approval timers, under the time-skipping test server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.devstack.temporal import temporal_binary


@pytest.fixture(scope="module")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


async def test_unanswered_approval_times_out_as_rejected(stack_factory: Any, skipping_env: WorkflowEnvironment) -> None:
    started = datetime.now(UTC)
    async with stack_factory(client=skipping_env.client) as stack:
        account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
        wf_id, = await stack.post_events(drop_events(stack.db, account))
        # While unlocked, the server skips ahead through the 72-hour approval timers.
        async with skipping_env.time_skipping_unlocked():  # type: ignore[attr-defined]
            result = await stack.run_result(wf_id, through_waits=True)
        # The first stretch's two items expired; five days later the follow-up planned
        # again (nobody replied, still at risk), and its items expired too.
        assert [o.status for o in result.outcomes][:2] == ["rejected", "rejected"]
        assert result.stretches == 2 and [o.step for o in result.outcomes][2:] == ["human_help"] * (len(result.outcomes) - 2)
        mails = stack.mails()
        assert not [m for m in mails if m.rcpt_to.endswith(".example") and "@demo.example" not in m.rcpt_to]
        # Past each role's SLA the item escalated to the next role, who was told.
        escalations = [m for m in mails if m.subject.startswith("[CS Autopilot] escalated")]
        assert {m.rcpt_to for m in escalations} == {"maria@demo.example", "vera@demo.example"}  # csm→manager, manager→vp
        rows = stack.approval_rows()
        assert len(rows) == len([o for o in result.outcomes if o.approval_id])
        assert {(r.status, r.decided_by) for r in rows} == {("expired", "system:timeout")}
        assert all("manager" in r.deciders["csm"] for r in rows)
        # The decision time is the workflow's (skipped) clock: 72 h after each request.
        for row in rows:
            assert row.decided_at is not None
            assert (row.decided_at.replace(tzinfo=UTC) - started).total_seconds() >= 72 * 3600 - 60
