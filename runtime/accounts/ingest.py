"""Signals in: store the events, update the account snapshots, evaluate the agents'
triggers, and signal-with-start `agent:<agent>:<account>` for each match."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from temporalio.client import Client
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from autopilot.runtime.accounts.fold import fold, on_event
from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.agents.specs import spec_hash
from autopilot.runtime.agents.triggers import SCHEDULE_EVENT, Triggers
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.contracts.run import AgentRunInput, EventSignal
from autopilot.runtime.health.scoring import score
from autopilot.runtime.policy.engine import PolicyEngine
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.events import Event, EventDispatch, EventKey
from autopilot.workflows.agent_run.workflow import AgentRunWorkflow
from autopilot.workflows.search import run_attributes


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


log = logging.getLogger(__name__)
DISPATCH_TIMEOUT = timedelta(seconds=3)  # per start: a Temporal outage must not hold the caller

# An event that happened longer ago than this is history: folded in and scored, never
# a trigger (a backfill must not contact customers about old facts).
LIVE_WINDOW = timedelta(hours=24)

SWEEP_BATCH = 100  # accounts per sweep transaction: the write lock is released between them


def sweep_key(day: date, agent: str, account_id: str) -> str:
    """The EventKey of a sweep's start of `agent` on an account: once per day."""
    return f"sweep:{day.isoformat()}:{agent}:{account_id}"


class Ingest:
    def __init__(
        self,
        db: Engine,
        client: Client,
        specs: dict[str, AgentSpec],
        *,
        task_queue: str,
        policy: PolicyEngine,
        search_attributes: bool = False,
    ) -> None:
        self.db, self.client, self.task_queue = db, client, task_queue
        # Runs start with the account/agent/segment/status search attributes only where
        # the namespace has them: set from `ensure_search_attributes` by whoever builds this.
        self.search_attributes = search_attributes
        # The bundle a run pins is read from the engine at dispatch, not at start-up:
        # after a hot reload every entry point (API, CLI, sweep) pins the new one.
        self.policy = policy
        self.specs = specs
        self.triggers = Triggers(specs)
        self.spec_hashes = {name: spec_hash(s) for name, s in specs.items()}

    def store(
        self,
        events: list[EventIn],
        *,
        org_id: str | None = None,
        owner: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[Stored]:
        """All or nothing: every event stored and folded in, or none. With `org_id`,
        an account of another organisation is unknown (no existence leak); with `owner`,
        so is an account outside that CSM's book. Live events
        are scored as they come and evaluate the triggers; history is folded in and its
        accounts rescored once, as of today."""
        now = datetime.now(UTC)
        out = []
        backfilled: dict[str, Account] = {}
        if (
            idempotency_key is not None
            and (seen := self._seen(org_id or "", idempotency_key)) is not None
        ):
            return [seen]  # a retry: the event was stored (and counted) once already
        try:
            with transaction(self.db, writes=True) as session:
                for i, ev in enumerate(events):
                    # Row-locked where the database can (Postgres); SQLite holds its write lock.
                    account = session.get(Account, ev.account_id, with_for_update=True)
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
                        on_event(
                            session,
                            account,
                            ev.model_dump(exclude_none=True),
                            at=at,
                            today=now.date(),
                        )
                    else:
                        fold(session, account, ev.model_dump(exclude_none=True), at, current=False)
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
                    if live and account.status == "active":  # a churned account starts no agent
                        snapshot = get_snapshot(session, account_id=account.id, today=now.date())
                        assert snapshot is not None
                        hits = self.triggers.matching(
                            snapshot, {"type": ev.type, **row.payload}, now.date()
                        )
                    out.append(
                        Stored(event_id=row.id, account_id=ev.account_id, type=ev.type, agents=hits)
                    )
                    if hits:  # the dispatch intent commits with the event and the account change
                        session.add(
                            EventDispatch(
                                event_id=row.id,
                                account_id=ev.account_id,
                                type=ev.type,
                                agents=hits,
                                created_at=now,
                            )
                        )
                    if idempotency_key is not None:
                        session.add(
                            EventKey(org_id=org_id or "", key=idempotency_key, event_id=row.id)
                        )
                active = [a for a in backfilled.values() if a.status == "active"]
                if active:
                    session.flush()
                    score(session, active, today=now.date(), now=now)

        except IntegrityError:
            # The same idempotency key posted twice at once: the other request stored it.
            if idempotency_key is not None and (seen := self._seen(org_id or "", idempotency_key)):
                return [seen]
            raise
        return out

    def unknown_accounts(self, events: list[EventIn], *, org_id: str | None = None) -> list[int]:
        """The indexes of events whose account does not exist (in `org_id`), in one query."""
        ids = {ev.account_id for ev in events}
        with transaction(self.db) as session:
            q = select(Account.id).where(col(Account.id).in_(ids))
            if org_id is not None:
                q = q.where(Account.org_id == org_id)
            known = set(session.exec(q).all())
        return [i for i, ev in enumerate(events) if ev.account_id not in known]

    def _seen(self, org_id: str, key: str) -> Stored | None:
        with transaction(self.db) as session:
            known = session.get(EventKey, (org_id, key))
            if known is None:
                return None
            event = session.get(Event, known.event_id)
            intent = session.get(EventDispatch, known.event_id)
            assert event is not None
            return Stored(
                event_id=known.event_id,
                account_id=event.account_id,
                type=event.type,
                agents=list(intent.agents) if intent else [],
            )

    async def dispatch(self, stored: list[Stored]) -> list[Started]:
        """Start (or signal) the runs the events triggered. A failure (Temporal down)
        leaves the intent pending for `redispatch`; nothing is lost and nothing raised.
        Starting twice is harmless: a running run coalesces the event, and a finished
        one's replay of the same event reuses its idempotency keys (no second email)."""
        started: list[Started] = []
        segments = (
            self._segments({item.account_id for item in stored if item.agents})
            if self.search_attributes
            else {}
        )
        for item in stored:
            if not item.agents:
                continue
            signal = EventSignal(event_id=item.event_id, type=item.type)
            error: str | None = None
            try:
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
                        search_attributes=run_attributes(
                            agent, item.account_id, segments.get(item.account_id, "")
                        )
                        if self.search_attributes
                        else None,
                        rpc_timeout=DISPATCH_TIMEOUT,
                    )
                    started.append(Started(event_id=item.event_id, workflow_id=wf_id))
            except (RPCError, TemporalError, OSError, TimeoutError) as err:
                error = f"{type(err).__name__}: {err}"[:300]
                log.warning("event %s not dispatched yet (%s): will retry", item.event_id, error)
            self._mark(item.event_id, error)
        return started

    def _segments(self, account_ids: set[str]) -> dict[str, str]:
        if not account_ids:
            return {}
        with transaction(self.db) as session:
            rows = session.exec(
                select(Account.id, Account.segment).where(col(Account.id).in_(account_ids))
            ).all()
        return dict(rows)

    def _mark(self, event_id: int, error: str | None) -> None:
        with transaction(self.db) as session:
            intent = session.get(EventDispatch, event_id)
            if intent is None:
                return
            intent.attempts += 1
            intent.last_error = error
            if error is None:
                intent.dispatched_at = datetime.now(UTC)
                event = session.get(Event, event_id)
                if event is not None:
                    event.dispatched = True
                    session.add(event)
            session.add(intent)

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
        done = 0
        for intent in pending:
            item = Stored(
                event_id=intent.event_id,
                account_id=intent.account_id,
                type=intent.type,
                agents=list(intent.agents),
            )
            if len(await self.dispatch([item])) == len(item.agents):
                done += 1
        return done

    async def run_dispatcher(self, stop: asyncio.Event, *, interval_s: float = 2.0) -> None:
        """The dispatcher loop beside the worker: retries pending intents until stopped."""
        while not stop.is_set():
            try:
                await self.redispatch()
            except Exception:  # a store hiccup must not end the loop: log it, try again
                log.exception("event dispatcher failed; retrying")
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
            except TimeoutError:
                pass

    async def ingest(self, events: list[EventIn]) -> list[Started]:
        return await self.dispatch(self.store(events))

    async def sweep(
        self,
        today: date,
        agents: list[str] | None = None,
        org_id: str | None = None,
        *,
        on_batch: Callable[[int], None] | None = None,
        batch: int = SWEEP_BATCH,
    ) -> list[Stored]:
        """The scheduled sweep: every active account (of `org_id`) is evaluated for the
        scheduled agents (of `agents`) due on it, and each account with some gets one
        `schedule` event and its dispatch intent, then its runs start. Once per agent,
        account and day (an EventKey each): a second sweep the same day stores and starts
        nothing. Returns what this sweep stored; `on_batch` hears how many accounts each
        batch evaluated."""
        with transaction(self.db) as session:
            q = select(Account.id).where(Account.status == "active").order_by(col(Account.id))
            if org_id is not None:
                q = q.where(Account.org_id == org_id)
            ids = list(session.exec(q).all())
        out: list[Stored] = []
        for at in range(0, len(ids), batch):
            chunk = ids[at : at + batch]
            # Off the event loop: the worker's other activities and heartbeats go on.
            stored = await asyncio.to_thread(self._sweep_batch, chunk, today, agents)
            await self.dispatch(stored)
            out += stored
            if on_batch is not None:
                on_batch(len(chunk))
        return out

    def _sweep_batch(self, ids: list[str], today: date, agents: list[str] | None) -> list[Stored]:
        """Evaluate (a read), then store what is due and not yet swept today in one short
        write transaction. A sweep running at the same time may store a key first: the
        batch is then evaluated again, and only what is left is stored."""
        for attempt in range(3):
            due: dict[str, tuple[str, list[str]]] = {}  # account -> (org, agents due)
            with transaction(self.db) as session:
                accounts = session.exec(
                    select(Account).where(col(Account.id).in_(ids), Account.status == "active")
                ).all()
                for account in accounts:
                    snapshot = get_snapshot(session, account_id=account.id, today=today)
                    assert snapshot is not None
                    if hits := self.triggers.due(snapshot, today, agents):
                        due[account.id] = (account.org_id, hits)
                keys = {
                    sweep_key(today, agent, account_id)
                    for account_id, (_, hits) in due.items()
                    for agent in hits
                }
                done = {
                    (k.org_id, k.key)
                    for k in session.exec(select(EventKey).where(col(EventKey.key).in_(keys)))
                }
            now = datetime.now(UTC)
            out: list[Stored] = []
            try:
                with transaction(self.db, writes=True) as session:
                    for account_id, (org, hits) in sorted(due.items()):
                        todo = [
                            a for a in hits if (org, sweep_key(today, a, account_id)) not in done
                        ]
                        if not todo:
                            continue
                        row = Event(
                            account_id=account_id,
                            type=SCHEDULE_EVENT,
                            occurred_at=now,
                            received_at=now,
                            payload={"agents": todo, "day": today.isoformat()},
                        )
                        session.add(row)
                        session.flush()
                        assert row.id is not None
                        session.add(
                            EventDispatch(
                                event_id=row.id,
                                account_id=account_id,
                                type=SCHEDULE_EVENT,
                                agents=todo,
                                created_at=now,
                            )
                        )
                        for agent in todo:
                            session.add(
                                EventKey(
                                    org_id=org,
                                    key=sweep_key(today, agent, account_id),
                                    event_id=row.id,
                                )
                            )
                        session.flush()
                        out.append(
                            Stored(
                                event_id=row.id,
                                account_id=account_id,
                                type=SCHEDULE_EVENT,
                                agents=todo,
                            )
                        )
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info("a concurrent sweep stored part of this batch: evaluating it again")
                continue
            return out
        raise AssertionError("unreachable")
