"""Dispatch starts many accounts' runs at once but one account's in order: a run gets
its account's events in the order they were stored (the first in its input, the others
as signals to the running run). Every outcome is recorded."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import Session, col, select
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from autopilot.runtime.accounts.ingest import Ingest, Stored, workflow_id
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.contracts.run import AgentRunInput, EventSignal
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.services import build_services
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.events import Event, EventDispatch


async def test_one_accounts_runs_get_its_events_in_order(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    svc = build_services(Settings(data_dir=tmp_path))
    seed_portfolio(svc.db, n=8)
    # No worker polls this queue: the runs wait, and their histories show the signals.
    ingest = Ingest(
        svc.db,
        temporal_env.client,
        svc.specs,
        task_queue=f"q-{uuid.uuid4().hex[:8]}",
        policy=svc.policy,
    )
    busy, others = "acc-0001", [f"acc-{i:04d}" for i in range(2, 9)]
    events = [EventIn(account_id=busy, type="login") for _ in range(40)]
    events += [EventIn(account_id=a, type="login") for a in others for _ in range(3)]
    stored = ingest.store(events)
    now = datetime.now(UTC)
    with transaction(svc.db) as s:  # every event triggers the adoption agent, say
        for item in stored:
            if not item.agents:
                s.add(
                    EventDispatch(
                        event_id=item.event_id,
                        account_id=item.account_id,
                        type=item.type,
                        agents=["adoption"],
                        created_at=now,
                    )
                )
    todo = [Stored(i.event_id, i.account_id, i.type, ["adoption"]) for i in stored]

    started = await ingest.dispatch(todo)

    assert [s.event_id for s in started] == [i.event_id for i in todo]
    for account in [busy, *others]:
        handle = temporal_env.client.get_workflow_handle(workflow_id("adoption", account))
        history = await handle.fetch_history()
        # The first event starts the run (in its input: a plain start, not signal-with-
        # start); the others reach the running run as signals, in order.
        started_with = (
            await temporal_env.client.data_converter.decode(
                history.events[0].workflow_execution_started_event_attributes.input.payloads,
                [AgentRunInput],
            )
        )[0].event.event_id
        signalled = [
            (
                await temporal_env.client.data_converter.decode(
                    e.workflow_execution_signaled_event_attributes.input.payloads, [EventSignal]
                )
            )[0].event_id
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        ]
        assert [started_with, *signalled] == [i.event_id for i in todo if i.account_id == account]
        await handle.terminate()
    with Session(svc.db) as s:
        intents = s.exec(select(EventDispatch)).all()
        events_marked = s.exec(select(Event).where(col(Event.dispatched))).all()
    assert len(intents) == len(todo) and all(i.dispatched_at and i.attempts == 1 for i in intents)
    assert len(events_marked) == len(todo)
