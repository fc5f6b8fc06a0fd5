"""The scheduled sweep: every active account evaluated once a day for the scheduled
agents due on it, each account with some getting one `schedule` event and its runs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from autopilot.runtime.accounts.dispatch import Dispatcher, Stored
from autopilot.runtime.accounts.subscription_events import refresh_terms
from autopilot.runtime.accounts.sweep_due import due as due_agents
from autopilot.runtime.agents.triggers import SCHEDULE_EVENT, Triggers
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.events import Event, EventDispatch, EventKey

log = logging.getLogger(__name__)
# Accounts per sweep transaction: the write lock is released between them (a batch's
# writes are three bulk inserts, a few milliseconds).
SWEEP_BATCH = 500


def sweep_key(day: date, agent: str, account_id: str) -> str:
    """The EventKey of a sweep's start of `agent` on an account: once per day."""
    return f"sweep:{day.isoformat()}:{agent}:{account_id}"


class Sweeper(Dispatcher):
    """The sweep half of `Ingest` (which sets these attributes)."""

    db: Engine
    triggers: Triggers

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
        batch evaluated. First, accounts with subscriptions get their terms as of `today`
        (a renewal date passed moves on by the billing period)."""
        await asyncio.to_thread(self._refresh_terms, today, org_id)
        with transaction(self.db) as session:
            q = select(Account.id).where(Account.status == "active").order_by(col(Account.id))
            if org_id is not None:
                q = q.where(Account.org_id == org_id)
            ids = list(session.exec(q).all())
        out: list[Stored] = []
        # A batch's runs start while the next batch is evaluated: the starts (a round trip
        # to Temporal each) are most of a sweep, and need not wait for the evaluation.
        starting: asyncio.Task[object] | None = None
        try:
            for at in range(0, len(ids), batch):
                chunk = ids[at : at + batch]
                # Off the event loop: the worker's other activities and heartbeats go on.
                stored = await asyncio.to_thread(self._sweep_batch, chunk, today, agents)
                if starting is not None:
                    await starting
                starting = asyncio.create_task(self.dispatch(stored))
                out += stored
                if on_batch is not None:
                    on_batch(len(chunk))
        finally:
            if starting is not None:
                await starting
        return out

    def _refresh_terms(self, today: date, org_id: str | None) -> None:
        with transaction(self.db, writes=True) as session:
            if changed := refresh_terms(session, today, org_id=org_id):
                log.info("sweep: %d accounts' terms moved on", changed, extra={"day": today})

    def _sweep_batch(self, ids: list[str], today: date, agents: list[str] | None) -> list[Stored]:
        """Evaluate (a read), then store what is due and not yet swept today in one short
        write transaction. A sweep running at the same time may store a key first: the
        batch is then evaluated again, and only what is left is stored."""
        for attempt in range(3):
            with transaction(self.db) as session:
                # account -> (org, agents due), read in bulk (`sweep_due`)
                due = due_agents(session, self.triggers, ids, today, agents)
                keys = {
                    sweep_key(today, agent, account_id)
                    for account_id, (_, hits) in due.items()
                    for agent in hits
                }
                done = {
                    (k.org_id, k.key)
                    for k in session.exec(select(EventKey).where(col(EventKey.key).in_(keys)))
                }
            try:
                with transaction(self.db, writes=True) as session:
                    out = _store_due(session, due, done, today)
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info("a concurrent sweep stored part of this batch: evaluating it again")
                continue
            return out
        raise AssertionError("unreachable")


def _store_due(
    session: Session,
    due: dict[str, tuple[str, list[str]]],
    done: set[tuple[str, str]],
    today: date,
) -> list[Stored]:
    """Each account's `schedule` event, dispatch intent and keys for the agents due and
    not swept yet today, in three bulk inserts (the events' ids come back in order)."""
    now = datetime.now(UTC)
    todo = {
        account_id: (org, left)
        for account_id, (org, hits) in sorted(due.items())
        if (left := [a for a in hits if (org, sweep_key(today, a, account_id)) not in done])
    }
    if not todo:
        return []
    conn = session.connection()
    ids = conn.execute(
        insert(Event).returning(col(Event.id), sort_by_parameter_order=True),
        [
            {
                "account_id": account_id,
                "type": SCHEDULE_EVENT,
                "occurred_at": now,
                "received_at": now,
                "payload": {"agents": agents, "day": today.isoformat()},
                "dispatched": False,
            }
            for account_id, (_, agents) in todo.items()
        ],
    ).scalars()
    out = [
        Stored(event_id=i, account_id=account_id, type=SCHEDULE_EVENT, agents=agents)
        for i, (account_id, (_, agents)) in zip(ids, todo.items(), strict=True)
        if i is not None  # RETURNING gives every inserted id
    ]
    conn.execute(
        insert(EventDispatch),
        [
            {
                "event_id": s.event_id,
                "account_id": s.account_id,
                "type": SCHEDULE_EVENT,
                "agents": s.agents,
                "created_at": now,
                "dispatched_at": None,
                "attempts": 0,
                "last_error": None,
            }
            for s in out
        ],
    )
    conn.execute(
        insert(EventKey),
        [
            {
                "org_id": todo[s.account_id][0],
                "key": sweep_key(today, agent, s.account_id),
                "event_id": s.event_id,
            }
            for s in out
            for agent in s.agents
        ],
    )
    return out
