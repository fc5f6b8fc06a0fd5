"""Starting the runs events trigger: signal-with-start `agent:<agent>:<account>` for
each stored dispatch intent, and retrying the intents Temporal could not take yet."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from temporalio.client import Client
from temporalio.exceptions import TemporalError, WorkflowAlreadyStartedError
from temporalio.service import RPCError

from autopilot.runtime.contracts.run import AgentRunInput, EventSignal
from autopilot.runtime.loops import every
from autopilot.runtime.policy.engine import PolicyEngine
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.events import Event, EventDispatch
from autopilot.workflows.agent_run.workflow import AgentRunWorkflow
from autopilot.workflows.search import run_attributes


@dataclass(frozen=True)
class Stored:
    event_id: int
    account_id: str
    type: str
    agents: list[str]
    again: bool = False  # delivered before (same source id): this is the first one


@dataclass(frozen=True)
class Started:
    event_id: int
    workflow_id: str


_D: Any = EventDispatch.__table__.c  # pyright: ignore[reportAttributeAccessIssue]
_E: Any = Event.__table__.c  # pyright: ignore[reportAttributeAccessIssue]
_IDS = bindparam("ids", expanding=True)
_TRIED = update(EventDispatch).where(_D.event_id.in_(_IDS))
_FAILED = _TRIED.values(attempts=_D.attempts + 1, last_error=bindparam("error"))
_STARTED = _TRIED.values(
    attempts=_D.attempts + 1,
    last_error=None,
    dispatched_at=bindparam("at", type_=_D.dispatched_at.type),
)
_DISPATCHED = update(Event).where(_E.id.in_(_IDS)).values(dispatched=True)


def workflow_id(agent: str, account_id: str) -> str:
    return f"agent:{agent}:{account_id}"


log = logging.getLogger(__name__)
DISPATCH_TIMEOUT = timedelta(seconds=3)  # per start: a Temporal outage must not hold the caller
DISPATCH_CONCURRENCY = 32  # starts in flight at once, each a round trip to Temporal
log = logging.getLogger(__name__)


class Dispatcher:
    """The dispatch half of `Ingest` (which sets these attributes)."""

    db: Engine
    client: Client
    task_queue: str
    search_attributes: bool
    policy: PolicyEngine
    spec_hashes: dict[str, str]

    async def dispatch(self, stored: list[Stored]) -> list[Started]:
        """Start (or signal) the runs the events triggered. A failure (Temporal down)
        leaves the intent pending for `redispatch`; nothing is lost and nothing raised.
        Starting twice is harmless: a running run coalesces the event, and a finished
        one's replay of the same event reuses its idempotency keys (no second email).
        Different accounts' starts are in flight together (a round trip each); one
        account's go in order, so its runs get their events in order. The outcomes are
        recorded in one transaction, off the event loop (it may wait for the write lock)."""
        todo = [item for item in stored if item.agents]
        if not todo:
            return []
        segments = (
            await asyncio.to_thread(self._segments, {item.account_id for item in todo})
            if self.search_attributes
            else {}
        )
        by_account: dict[str, list[Stored]] = {}
        for item in todo:
            by_account.setdefault(item.account_id, []).append(item)
        gate = asyncio.Semaphore(DISPATCH_CONCURRENCY)
        outcomes: dict[int, tuple[list[Started], str | None]] = {}

        async def in_order(items: list[Stored]) -> None:
            for item in items:
                async with gate:
                    outcomes[item.event_id] = await self._start(
                        item, segments.get(item.account_id, "")
                    )

        await asyncio.gather(*(in_order(items) for items in by_account.values()))
        await asyncio.to_thread(self._mark, {i: error for i, (_, error) in outcomes.items()})
        return [s for item in todo for s in outcomes[item.event_id][0]]

    async def _start(self, item: Stored, segment: str) -> tuple[list[Started], str | None]:
        """Each of the event's runs, in turn, until one cannot be started."""
        started: list[Started] = []
        signal = EventSignal(event_id=item.event_id, type=item.type)
        try:
            for agent in item.agents:
                wf_id = workflow_id(agent, item.account_id)
                inp = AgentRunInput(
                    agent=agent,
                    account_id=item.account_id,
                    event=signal,
                    spec_hash=self.spec_hashes[agent],
                    bundle_hash=self.policy.bundle_hash,
                )
                attrs = (
                    run_attributes(agent, item.account_id, segment)
                    if self.search_attributes
                    else None
                )
                # A plain start first, eager: a worker of this process with a free slot
                # gets the run's first task in the start's reply (no poll, no wait: the
                # run is under way ~8 ms sooner, evals/bench/e2e.py). A run already
                # going gets the event as a signal instead; a closed one is started anew
                # by either call (the id may be reused), as signal-with-start would.
                try:
                    await self.client.start_workflow(
                        AgentRunWorkflow.run,
                        inp,
                        id=wf_id,
                        task_queue=self.task_queue,
                        search_attributes=attrs,
                        rpc_timeout=DISPATCH_TIMEOUT,
                        request_eager_start=True,
                    )
                except WorkflowAlreadyStartedError:
                    await self.client.start_workflow(
                        AgentRunWorkflow.run,
                        inp,
                        id=wf_id,
                        task_queue=self.task_queue,
                        start_signal="event",
                        start_signal_args=[signal],
                        search_attributes=attrs,
                        rpc_timeout=DISPATCH_TIMEOUT,
                    )
                started.append(Started(event_id=item.event_id, workflow_id=wf_id))
        except (RPCError, TemporalError, OSError, TimeoutError) as err:
            error = f"{type(err).__name__}: {err}"[:300]
            log.warning("event %s not dispatched yet (%s): will retry", item.event_id, error)
            return started, error
        return started, None

    def _segments(self, account_ids: set[str]) -> dict[str, str]:
        if not account_ids:
            return {}
        with transaction(self.db) as session:
            rows = session.exec(
                select(Account.id, Account.segment).where(col(Account.id).in_(account_ids))
            ).all()
        return dict(rows)

    def _mark(self, outcomes: dict[int, str | None]) -> None:
        """Record each event's dispatch attempt: its error, or that all its runs started.
        Plain UPDATEs (the count goes up in SQL): no read first, no lock held for one,
        one statement per distinct error (all started: one)."""
        now = datetime.now(UTC)
        by_error: dict[str | None, list[int]] = {}
        for event_id, error in outcomes.items():
            by_error.setdefault(error, []).append(event_id)
        with transaction(self.db) as session:
            conn = session.connection()
            for error, ids in by_error.items():
                if error is None:
                    conn.execute(_STARTED, {"ids": ids, "at": now})
                else:
                    conn.execute(_FAILED, {"ids": ids, "error": error})
            if done := by_error.get(None):
                conn.execute(_DISPATCHED, {"ids": done})

    async def redispatch(
        self, *, older_than: timedelta = timedelta(seconds=5), limit: int = 500
    ) -> int:
        """Dispatch intents still pending (Temporal was down, or the process died between
        storing and starting); returns how many events got all their runs started."""
        cutoff = datetime.now(UTC) - older_than
        with transaction(self.db) as session:
            pending = session.exec(
                select(EventDispatch)
                .where(
                    col(EventDispatch.dispatched_at).is_(None),
                    col(EventDispatch.created_at) <= cutoff,
                )
                .order_by(col(EventDispatch.event_id))
                .limit(limit)
            ).all()
        items = [
            Stored(
                event_id=intent.event_id,
                account_id=intent.account_id,
                type=intent.type,
                agents=list(intent.agents),
            )
            for intent in pending
        ]
        started = Counter(s.event_id for s in await self.dispatch(items))
        return sum(1 for item in items if started[item.event_id] == len(item.agents))

    async def run_dispatcher(self, stop: asyncio.Event, *, interval_s: float = 2.0) -> None:
        """The dispatcher loop beside the worker: retries pending intents until stopped."""
        await every(interval_s, stop, self.redispatch, what="event dispatcher")
