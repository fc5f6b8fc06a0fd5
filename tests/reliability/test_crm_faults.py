"""The CRM down and back, and a CRM that applies a write but whose answer is lost: the
connector's receiver de-duplicates by Idempotency-Key, so the outcome is reconciled by
asking again with the same key — applied exactly once, counted at the CRM."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlmodel import Session, select

from autopilot.runtime.contracts.tool import ToolCall
from autopilot.runtime.devstack.crm import create_crm_app
from autopilot.runtime.execution.executor import execute_once
from autopilot.runtime.execution.outcomes import reconcile_once
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.db import make_engine
from autopilot.runtime.store.outcomes import OutcomeCheck
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.tools.builtin import registry
from autopilot.tools.registry import ToolOutcomeUnknown, ToolUnavailable
from tests.conftest import Stack, free_port, make_settings, wait_for


@dataclass
class Crm:
    """The reference CRM behind a switch: `slow` holds each write's answer back for
    `delay_s` after the write was applied (the client has given up by then)."""

    port: int
    app: Any
    slow: bool = False
    delay_s: float = 1.5
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def writes(self) -> list[dict[str, Any]]:
        return self.app.state.writes  # type: ignore[no-any-return]

    async def start(self) -> None:
        inner = self.app

        async def switch(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["method"] == "GET" or not self.slow:
                return await inner(scope, receive, send)
            held: list[Any] = []

            async def hold(message: Any) -> None:
                held.append(message)

            await inner(scope, receive, hold)  # applied (and remembered under its key)
            await asyncio.sleep(self.delay_s)
            for message in held:
                await send(message)

        self.server = uvicorn.Server(uvicorn.Config(switch, host="127.0.0.1", port=self.port,
                                                   log_level="warning", lifespan="off"))
        self.task = asyncio.create_task(self.server.serve())
        await wait_for(lambda: self.server.started, what="the CRM")  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.should_exit = True
            await self.task
            self.server = self.task = None


@pytest.fixture
async def crm() -> AsyncIterator[Crm]:
    c = Crm(port=free_port(), app=create_crm_app())
    yield c
    await c.stop()


ARGS = {"account_id": "acc-0001", "field": "adoption_status", "value": "at_risk"}


def _status(db: Any, key: str) -> str:
    with Session(db) as s:
        return s.get(ToolCallRecord, key).status  # type: ignore[union-attr]


async def test_crm_down_then_back_is_written_once(crm: Crm, tmp_path: Path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    settings = make_settings(tmp_path, crm_url=crm.url, http_timeout_s=0.5)
    call = ToolCall(tool="crm_update_field", args=ARGS, idempotency_key="crm/1", granted=["crm_update_field"])
    with pytest.raises(ToolUnavailable):  # nobody listening: known not written
        await asyncio.to_thread(execute_once, db, registry, call, None, settings)
    assert _status(db, "crm/1") == "failed"
    await crm.start()
    await asyncio.to_thread(execute_once, db, registry, call, None, settings)
    assert len(crm.writes) == 1 and _status(db, "crm/1") == "done"


async def test_a_crm_answer_lost_after_the_write_is_reconciled_by_its_key(crm: Crm, tmp_path: Path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    settings = make_settings(tmp_path, crm_url=crm.url, http_timeout_s=0.5)
    await crm.start()
    crm.slow = True
    call = ToolCall(tool="crm_update_field", args=ARGS, idempotency_key="crm/2", granted=["crm_update_field"])
    with pytest.raises(ToolOutcomeUnknown):
        await asyncio.to_thread(execute_once, db, registry, call, None, settings)
    assert len(crm.writes) == 1 and _status(db, "crm/2") == "unknown"
    with pytest.raises(ToolOutcomeUnknown):  # asked again, the answer lost again: still unknown
        await asyncio.to_thread(execute_once, db, registry, call, None, settings)
    assert _status(db, "crm/2") == "unknown"
    crm.slow = False
    result = await asyncio.to_thread(execute_once, db, registry, call, None, settings)
    assert result.status == "done" and len(crm.writes) == 1  # the CRM answered from its key


async def test_a_run_whose_crm_write_stayed_unknown_is_reconciled_later(
    stack_factory: Any, tmp_path: Path, crm: Crm
) -> None:
    """Past its retry window the action is an open check; the reconciler asks the CRM
    with the same key once it answers: executed, written once."""
    from tests.tools.test_connectors import adoption_account, adoption_events

    await crm.start()
    crm.slow = True
    settings = make_settings(tmp_path, crm_url=crm.url, http_timeout_s=0.5, send_retry_hours=0.001,
                             send_max_backoff_s=1.0)
    async with stack_factory(settings=settings) as stack:
        stack: Stack
        account = adoption_account(stack)
        wf_id, = await stack.post_events(adoption_events(account))
        result = await stack.run_result(wf_id)
        crm_outcome = next(o for o in result.outcomes if o.tool == "crm_update_field")
        assert crm_outcome.status == "unknown"
        with Session(stack.db) as s:
            check = s.exec(select(OutcomeCheck).where(OutcomeCheck.workflow_id == wf_id)).one()
        assert check.status == "open" and len(crm.writes) == 1
        crm.slow = False
        done = await reconcile_once(stack.services)
        assert done.reconciled == 1 and len(crm.writes) == 1
        with Session(stack.db) as s:
            assert s.get(OutcomeCheck, check.run_key).status == "reconciled"  # type: ignore[union-attr]
            assert s.get(ActionRecord, check.run_key).status == "executed"  # type: ignore[union-attr]
