"""Signals in: store the events, update the account snapshots, evaluate the agents'
triggers, and signal-with-start `agent:<agent>:<account>` for each match."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from temporalio.client import Client

from autopilot.runtime.accounts.batch import BatchFold, load_accounts
from autopilot.runtime.accounts.compliance_due import decisions_to_record, opt_outs_lifted
from autopilot.runtime.accounts.dispatch import (
    DISPATCH_CONCURRENCY,
    DISPATCH_TIMEOUT,
    Started,
    Stored,
    workflow_id,
)
from autopilot.runtime.accounts.snapshot import snapshot_of
from autopilot.runtime.accounts.subscription_events import (
    BOOK_EVENTS,
    Book,
    SubscriptionEventError,
)
from autopilot.runtime.accounts.sweep import SWEEP_BATCH, Sweeper, sweep_key
from autopilot.runtime.accounts.warm import Warm, WarmCache, stamp
from autopilot.runtime.agents.specs import spec_hash
from autopilot.runtime.agents.triggers import Triggers
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.observability.metrics import EVENTS_INGESTED
from autopilot.runtime.observability.tracing import traced_client
from autopilot.runtime.policy.engine import PolicyEngine
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.events import Event, EventDispatch, EventKey

# Kept importable from here (their home moved with the dispatch and the sweep).
__all__ = [
    "DISPATCH_CONCURRENCY",
    "DISPATCH_TIMEOUT",
    "SWEEP_BATCH",
    "Ingest",
    "Started",
    "Stored",
    "UnknownAccount",
    "sweep_key",
    "workflow_id",
]


def id_key(event_id: str) -> str:
    """The EventKey of an event's source id (beside Idempotency-Keys and sweeps)."""
    return f"event-id:{event_id}"


class UnknownAccount(ValueError):
    def __init__(self, index: int, account_id: str) -> None:
        self.index, self.account_id = index, account_id
        super().__init__(f"unknown account '{account_id}'")


# An event that happened longer ago than this is history: folded in and scored, never
# a trigger (a backfill must not contact customers about old facts).
LIVE_WINDOW = timedelta(hours=24)


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


class Ingest(Sweeper):
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
        ... FOR UPDATE`) as they are read.

        An event with an `id` stored before (in the organisation), or earlier in the list,
        is not stored again: its place in the answer holds the first one, `again` set."""
        if (
            idempotency_key is not None
            and (seen := self._seen(org_id or "", idempotency_key)) is not None
        ):
            return [seen]  # a retry: the event was stored (and counted) once already
        if not events:
            return []
        known = self._seen_ids(org_id or "", {ev.id for ev in events if ev.id is not None})
        fresh: list[int] = []  # the events to store: no id, or one seen nowhere yet
        for i, ev in enumerate(events):
            if ev.id is None or ev.id not in known:
                fresh.append(i)
                if ev.id is not None:
                    known[ev.id] = None
        try:
            new = self._store_new([events[i] for i in fresh], org_id, owner, idempotency_key)
        except IntegrityError:
            # The same id (or idempotency key) delivered twice at once: the other stored it.
            if idempotency_key is not None and (seen := self._seen(org_id or "", idempotency_key)):
                return [seen]
            if not any(events[i].id for i in fresh):
                raise
            return self.store(events, org_id=org_id, owner=owner, idempotency_key=idempotency_key)
        out = dict(zip(fresh, new, strict=True))
        first = {events[i].id: s for i, s in out.items() if events[i].id is not None}
        return [
            out[i] if i in out else replace(known[ev.id] or first[ev.id], again=True)  # type: ignore[index]
            for i, ev in enumerate(events)
        ]

    def _store_new(
        self,
        events: list[EventIn],
        org_id: str | None,
        owner: str | None,
        idempotency_key: str | None,
    ) -> list[Stored]:
        now = datetime.now(UTC)
        if not events:
            return []
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
        book = Book(session, today=now.date())  # the subscriptions these events change
        book.load({ev.account_id for ev in events if ev.type in BOOK_EVENTS})
        batch = BatchFold(
            session,
            accounts,
            today=now.date(),
            now=now,
            days={(ev.account_id, at.astimezone(UTC).date()) for ev, at in timed},
            warm=warm,
            book=book,
        )
        points: list[int | None] = []
        for i, (ev, at) in enumerate(timed):
            try:
                points.append(
                    batch.add(
                        accounts[ev.account_id],
                        ev.model_dump(exclude_none=True),
                        at,
                        live=at >= now - LIVE_WINDOW,
                    )
                )
            except SubscriptionEventError as err:
                err.index = i
                raise
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
        session.add_all(
            EventKey(org_id=org_id or "", key=id_key(ev.id), event_id=i)
            for (ev, _), i in zip(plan.timed, ids, strict=True)
            if ev.id is not None
        )
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
        live = sorted({batch.points[p].account_id for p in points if p is not None})
        contacts = batch.contacts(set(live))
        # As the sweep and a run's snapshot see them (one query each for the batch).
        to_record = decisions_to_record(batch.session, live) if live else {}
        lifted = opt_outs_lifted(batch.session, live) if live else {}
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
                decisions_to_record=to_record.get(ev.account_id, 0),
                opt_outs_lifted=lifted.get(ev.account_id, 0),
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
        return self._seen_keys(org_id, {key}).get(key)

    def _seen_ids(self, org_id: str, ids: set[str]) -> dict[str, Stored | None]:
        """The events of these source ids stored already, by id."""
        if not ids:
            return {}
        seen = self._seen_keys(org_id, {id_key(i) for i in ids})
        return {i: seen[id_key(i)] for i in ids if id_key(i) in seen}

    def _seen_keys(self, org_id: str, keys: set[str]) -> dict[str, Stored]:
        with transaction(self.db) as session:
            rows = session.exec(
                select(EventKey.key, Event, EventDispatch)
                .join(Event, col(Event.id) == EventKey.event_id)
                .join(EventDispatch, col(EventDispatch.event_id) == EventKey.event_id, isouter=True)
                .where(EventKey.org_id == org_id, col(EventKey.key).in_(keys))
            ).all()
            return {
                key: Stored(
                    event_id=event.id or 0,
                    account_id=event.account_id,
                    type=event.type,
                    agents=list(intent.agents) if intent else [],
                )
                for key, event, intent in rows
            }

    async def ingest(self, events: list[EventIn]) -> list[Started]:
        return await self.dispatch(self.store(events))
