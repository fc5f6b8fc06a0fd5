"""Signals in: store the events, update the account snapshots, evaluate the agents'
triggers, and signal-with-start `agent:<agent>:<account>` for each match."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from autopilot.runtime.accounts.batch import BatchFold, load_accounts
from autopilot.runtime.accounts.snapshot import get_snapshot, snapshot_of
from autopilot.runtime.accounts.warm import Warm, WarmCache, stamp
from autopilot.runtime.agents.specs import spec_hash
from autopilot.runtime.agents.triggers import SCHEDULE_EVENT, Triggers
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.contracts.run import AgentRunInput, EventSignal
from autopilot.runtime.loops import every
from autopilot.runtime.observability.metrics import EVENTS_INGESTED
from autopilot.runtime.observability.tracing import traced_client
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
DISPATCH_CONCURRENCY = 32  # starts in flight at once, each a round trip to Temporal

# An event that happened longer ago than this is history: folded in and scored, never
# a trigger (a backfill must not contact customers about old facts).
LIVE_WINDOW = timedelta(hours=24)

SWEEP_BATCH = 100  # accounts per sweep transaction: the write lock is released between them


@dataclass(frozen=True)
class _Plan:
    """A batch ready to write: folded, scored, its triggers evaluated."""

    batch: BatchFold
    timed: list[tuple[EventIn, datetime]]  # each event, with when it happened (UTC)
    payloads: list[dict[str, Any]]
    hits: list[list[str]]  # the agents each event starts


def _lock(session: Session) -> bool:
    """Take SQLite's write lock (True); elsewhere the rows were locked as they were read."""
    if session.get_bind().dialect.name != "sqlite":
        return False
    session.connection().exec_driver_sql("BEGIN IMMEDIATE")
    return True


def _in_scope(
    accounts: dict[str, Account],
    events: list[EventIn],
    *,
    org_id: str | None,
    owner: str | None,
) -> None:
    """The first event whose account is unknown, of another organisation or (with
    `owner`) outside that CSM's book raises: the same answer for all three."""
    for i, ev in enumerate(events):
        account = accounts.get(ev.account_id)
        if (
            account is None
            or (org_id is not None and account.org_id != org_id)
            or (owner is not None and account.owner_csm != owner)
        ):
            raise UnknownAccount(i, ev.account_id)


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


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
        # The client carries the caller's trace into the runs it starts (the API request's).
        # (None: a store-only import, which starts no run.)
        traced = traced_client(client) if client is not None else client
        self.db, self.client, self.task_queue = db, traced, task_queue
        # Runs start with the account/agent/segment/status search attributes only where
        # the namespace has them: set from `ensure_search_attributes` by whoever builds this.
        self.search_attributes = search_attributes
        # The bundle a run pins is read from the engine at dispatch, not at start-up:
        # after a hot reload every entry point (API, CLI, sweep) pins the new one.
        self.policy = policy
        self.specs = specs
        self.triggers = Triggers(specs)
        self._warm = WarmCache()  # what a batch leaves for the next (see `warm`)
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
        so is an account outside that CSM's book. Live events are scored as they come and
        evaluate the triggers; history is folded in and its accounts rescored once, as of
        today. The list is one batch (`BatchFold`) and one write transaction.

        On SQLite the batch is planned (read, folded, scored, triggers evaluated) before
        the write lock is taken, and the lock is held only for its writes: another writer
        (`POST /events` beside a bulk import) waits for those, not for the planning. If
        anyone wrote in between (the stamp moved), the batch is planned again, holding
        the lock, so no update is ever lost. Elsewhere the accounts are locked (`SELECT
        ... FOR UPDATE`) as they are read."""
        now = datetime.now(UTC)
        if (
            idempotency_key is not None
            and (seen := self._seen(org_id or "", idempotency_key)) is not None
        ):
            return [seen]  # a retry: the event was stored (and counted) once already
        if not events:
            return []
        try:
            with Session(self.db, expire_on_commit=False) as session:
                try:
                    before = stamp(session, now.date())
                    plan = self._plan(session, events, now, org_id, owner, self._warm.take(before))
                    if _lock(session) and stamp(session, now.date()) != before:
                        plan = self._plan(session, events, now, org_id, owner, Warm())
                    ids = self._write(session, plan, now, org_id, idempotency_key)
                    warm = plan.batch.leave()
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
            self._warm.keep(warm)  # committed: the next batch may start from here
            EVENTS_INGESTED.inc(len(ids))
        except IntegrityError:
            # The same idempotency key posted twice at once: the other request stored it.
            if idempotency_key is not None and (seen := self._seen(org_id or "", idempotency_key)):
                return [seen]
            raise
        return [
            Stored(event_id=i, account_id=ev.account_id, type=ev.type, agents=agents)
            for i, ev, agents in zip(ids, events, plan.hits, strict=True)
        ]

    def _plan(
        self,
        session: Session,
        events: list[EventIn],
        now: datetime,
        org_id: str | None,
        owner: str | None,
        warm: Warm,
    ) -> _Plan:
        """Everything the batch will write, from reads only."""
        timed = [(ev, _utc(ev.occurred_at or now)) for ev in events]
        accounts = load_accounts(session, {ev.account_id for ev in events}, warm)
        _in_scope(accounts, events, org_id=org_id, owner=owner)
        batch = BatchFold(
            session,
            accounts,
            today=now.date(),
            now=now,
            days={(ev.account_id, at.astimezone(UTC).date()) for ev, at in timed},
            warm=warm,
        )
        points = [
            batch.add(
                accounts[ev.account_id],
                ev.model_dump(exclude_none=True),
                at,
                live=at >= now - LIVE_WINDOW,
            )
            for ev, at in timed
        ]
        batch.finish()
        payloads = [ev.model_dump(mode="json", exclude_none=True) for ev in events]
        hits = self._triggered(batch, events, payloads, points, now.date())
        return _Plan(batch, timed, payloads, hits)

    def _write(
        self,
        session: Session,
        plan: _Plan,
        now: datetime,
        org_id: str | None,
        idempotency_key: str | None,
    ) -> list[int]:
        plan.batch.write()
        ids = self._insert(session, plan.timed, plan.payloads, plan.hits, now=now)
        if idempotency_key is not None:
            session.add(EventKey(org_id=org_id or "", key=idempotency_key, event_id=ids[0]))
        return ids

    def _triggered(
        self,
        batch: BatchFold,
        events: list[EventIn],
        payloads: list[dict[str, Any]],
        points: list[int | None],
        today: date,
    ) -> list[list[str]]:
        """The agents each event starts: its triggers, on the account as the event left
        it (the batch's point); none for history or a churned account."""
        contacts = batch.contacts({batch.points[p].account_id for p in points if p is not None})
        hits: list[list[str]] = []
        for ev, payload, p in zip(events, payloads, points, strict=True):
            if p is None:
                hits.append([])
                continue
            at = batch.points[p]
            snapshot = snapshot_of(
                at.fields,
                health=at.health,
                risk=at.risk,
                reasons=[],  # triggers do not see the reasons (`as_cel`)
                contacts=contacts[ev.account_id],
            )
            hits.append(self.triggers.matching(snapshot, {"type": ev.type, **payload}, today))
        return hits

    @staticmethod
    def _insert(
        session: Session,
        timed: list[tuple[EventIn, datetime]],
        payloads: list[dict[str, Any]],
        hits: list[list[str]],
        *,
        now: datetime,
    ) -> list[int]:
        """The events, then the dispatch intents of those that triggered (in the same
        transaction as the account change); returns the events' ids, in order."""
        conn = session.connection()
        ids = list(
            conn.execute(
                insert(Event).returning(col(Event.id), sort_by_parameter_order=True),
                [
                    {
                        "account_id": ev.account_id,
                        "type": ev.type,
                        "occurred_at": at,
                        "received_at": now,
                        "payload": payload,
                        "dispatched": False,
                    }
                    for (ev, at), payload in zip(timed, payloads, strict=True)
                ],
            ).scalars()
        )
        intents = [
            {
                "event_id": i,
                "account_id": ev.account_id,
                "type": ev.type,
                "agents": agents,
                "created_at": now,
                "dispatched_at": None,
                "attempts": 0,
                "last_error": None,
            }
            for i, (ev, _), agents in zip(ids, timed, hits, strict=True)
            if agents
        ]
        if intents:
            conn.execute(insert(EventDispatch), intents)
        return [i for i in ids if i is not None]  # RETURNING gives every inserted id

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
                    search_attributes=run_attributes(agent, item.account_id, segment)
                    if self.search_attributes
                    else None,
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
        """Record each event's dispatch attempt: its error, or that all its runs started."""
        now = datetime.now(UTC)
        with transaction(self.db, writes=True) as session:  # attempts += 1: read, then write
            intents = session.exec(
                select(EventDispatch).where(col(EventDispatch.event_id).in_(list(outcomes)))
            ).all()
            for intent in intents:
                intent.attempts += 1
                intent.last_error = outcomes[intent.event_id]
                if intent.last_error is None:
                    intent.dispatched_at = now
                session.add(intent)
            if done := [i.event_id for i in intents if i.last_error is None]:
                session.connection().execute(
                    update(Event).where(col(Event.id).in_(done)).values(dispatched=True)
                )

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
