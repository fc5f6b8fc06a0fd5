"""Signals in: store the events, update the account snapshots, evaluate the agents'
triggers, and signal-with-start `agent:<agent>:<account>` for each match."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import col, select
from temporalio.client import Client

from autopilot.runtime.accounts.fold import fold, on_event
from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.agents.specs import spec_hash
from autopilot.runtime.agents.triggers import Triggers
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.contracts.run import AgentRunInput, EventSignal
from autopilot.runtime.health.scoring import score
from autopilot.runtime.policy.engine import PolicyEngine
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.events import Event
from autopilot.workflows.agent_run.workflow import AgentRunWorkflow


class UnknownAccount(ValueError):
    def __init__(self, index: int, account_id: str) -> None:
        self.index, self.account_id = index, account_id
        super().__init__(f"unknown account '{account_id}'")


@dataclass(frozen=True)
class Stored:
    event_id: int
    account_id: str
    type: str
    agents: list[str]


@dataclass(frozen=True)
class Started:
    event_id: int
    workflow_id: str


def workflow_id(agent: str, account_id: str) -> str:
    return f"agent:{agent}:{account_id}"


# An event that happened longer ago than this is history: folded in and scored, never
# a trigger (a backfill must not contact customers about old facts).
LIVE_WINDOW = timedelta(hours=24)


class Ingest:
    def __init__(
        self,
        db: Engine,
        client: Client,
        specs: dict[str, AgentSpec],
        *,
        task_queue: str,
        policy: PolicyEngine,
    ) -> None:
        self.db, self.client, self.task_queue = db, client, task_queue
        # The bundle a run pins is read from the engine at dispatch, not at start-up:
        # after a hot reload every entry point (API, CLI, sweep) pins the new one.
        self.policy = policy
        self.specs = specs
        self.triggers = Triggers(specs)
        self.spec_hashes = {name: spec_hash(s) for name, s in specs.items()}

    def store(
        self, events: list[EventIn], *, org_id: str | None = None, owner: str | None = None
    ) -> list[Stored]:
        """All or nothing: every event stored and folded in, or none. With `org_id`,
        an account of another organisation is unknown (no existence leak); with `owner`,
        so is an account outside that CSM's book. Live events
        are scored as they come and evaluate the triggers; history is folded in and its
        accounts rescored once, as of today."""
        now = datetime.now(UTC)
        out = []
        backfilled: dict[str, Account] = {}
        with transaction(self.db) as session:
            for i, ev in enumerate(events):
                account = session.get(Account, ev.account_id)
                if (
                    account is None
                    or (org_id is not None and account.org_id != org_id)
                    or (owner is not None and account.owner_csm != owner)
                ):
                    raise UnknownAccount(i, ev.account_id)
                at = ev.occurred_at or now
                at = at if at.tzinfo else at.replace(tzinfo=UTC)
                payload = ev.model_dump(mode="json", exclude_none=True)
                live = at >= now - LIVE_WINDOW
                if live:
                    on_event(session, account, ev.model_dump(exclude_none=True), at=at)
                else:
                    fold(session, account, ev.model_dump(exclude_none=True), at)
                    backfilled[account.id] = account
                row = Event(
                    account_id=ev.account_id,
                    type=ev.type,
                    occurred_at=at,
                    received_at=now,
                    payload=payload,
                )
                session.add(row)
                session.flush()
                assert row.id is not None
                hits: list[str] = []
                if live:
                    snapshot = get_snapshot(session, account_id=account.id, today=now.date())
                    assert snapshot is not None
                    hits = self.triggers.matching(
                        snapshot, {"type": ev.type, **row.payload}, now.date()
                    )
                out.append(
                    Stored(event_id=row.id, account_id=ev.account_id, type=ev.type, agents=hits)
                )
            active = [a for a in backfilled.values() if a.status == "active"]
            if active:
                session.flush()
                score(session, active, today=now.date(), now=now)
        return out

    async def dispatch(self, stored: list[Stored]) -> list[Started]:
        started = []
        for item in stored:
            signal = EventSignal(event_id=item.event_id, type=item.type)
            for agent in item.agents:
                wf_id = workflow_id(agent, item.account_id)
                # Signal-with-start: a running workflow gets the event, otherwise one starts.
                await self.client.start_workflow(
                    AgentRunWorkflow.run,
                    AgentRunInput(
                        agent=agent,
                        account_id=item.account_id,
                        event=signal,
                        spec_hash=self.spec_hashes[agent],
                        bundle_hash=self.policy.bundle_hash,
                    ),
                    id=wf_id,
                    task_queue=self.task_queue,
                    start_signal="event",
                    start_signal_args=[signal],
                )
                started.append(Started(event_id=item.event_id, workflow_id=wf_id))
        with transaction(self.db) as session:
            ids = [item.event_id for item in stored]
            for row in session.exec(select(Event).where(col(Event.id).in_(ids))):
                row.dispatched = True
                session.add(row)
        return started

    async def ingest(self, events: list[EventIn]) -> list[Started]:
        return await self.dispatch(self.store(events))
