"""A batch of events folds exactly as the events one by one (`on_event`, then the
snapshot and the triggers): same accounts, rollups, stored health, alerts, triggered
agents and dispatch intents. And what a batch keeps warm for the next one is never
stale: after another writer, on another connection or on the same one, after a
failed batch, the next batch scores from what the store holds."""

from __future__ import annotations

import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.accounts.fold import fold, on_event
from autopilot.runtime.accounts.ingest import LIVE_WINDOW, Ingest
from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.agents.specs import load_specs
from autopilot.runtime.agents.triggers import Triggers
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.health.features import FEATURES, compute
from autopilot.runtime.health.scoring import current, load_windows, score
from autopilot.runtime.services import make_policy_engine
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.customer import AccountDay, AccountScore, RiskAlert
from autopilot.runtime.store.db import make_engine, transaction
from autopilot.runtime.store.events import Event, EventDispatch

ACCOUNTS = [f"acc-{i:04d}" for i in range(1, 9)]
MODULES = ["core", "reports", "automation", "integrations", "admin", "mobile"]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("seeded")
    engine = make_engine(f"sqlite:///{folder / 'a.db'}")
    seed_portfolio(engine, n=len(ACCOUNTS))
    engine.dispose()
    return folder / "a.db"


def _copy(seeded: Path, to: Path) -> Engine:
    shutil.copy(seeded, to)
    return make_engine(f"sqlite:///{to}")


def _ingest(db: Engine, specs: dict[str, AgentSpec] | None = None) -> Ingest:
    settings = Settings()
    return Ingest(
        db,
        None,  # type: ignore[arg-type]  # storing needs no Temporal: dispatch is not called
        specs or load_specs(settings.agents_path),
        task_queue="none",
        policy=make_policy_engine(settings),
    )


def _events(seed: int, n: int) -> list[EventIn]:
    """Live and history events; two accounts decline hard (alerts), two churn."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for _ in range(n):
        account = rng.choice(ACCOUNTS)
        bad = account in ACCOUNTS[:2]
        at = (
            now - timedelta(days=rng.uniform(2, 40))
            if rng.random() < 0.25
            else now - timedelta(hours=rng.uniform(0, 20))
        )
        kind = rng.choice(
            ["usage_snapshot", "ticket_opened", "sentiment", "payment_failed", "ticket_opened"]
            if bad
            else ["login", "login", "feature_use", "ticket_closed", "nps", "usage_snapshot"]
        )
        fields: dict[str, Any] = {
            "login": {"logins": rng.randint(0, 4)},
            "feature_use": {"module": rng.choice(MODULES)},
            "ticket_opened": {"priority": rng.choice(["P1", "P2"])},
            "ticket_closed": {"priority": rng.choice(["P1", "P3"])},
            "nps": {"score": rng.randint(0, 10)},
            "usage_snapshot": {"active_users": 0 if bad else rng.randint(1, 40), "seats_used": 1},
            "sentiment": {"sentiment": -0.9},
            "payment_failed": {"amount": 100.0},
        }[kind]
        out.append(EventIn(account_id=account, type=kind, occurred_at=at, **fields))
    # One account churns amid a batch, another as a batch begins; events follow both.
    for at, account in ((130, ACCOUNTS[7]), (180, ACCOUNTS[6])):
        out.insert(at, EventIn(account_id=account, type="churned"))
        out.insert(at + 1, EventIn(account_id=account, type="login"))
        out.insert(at + 2, EventIn(account_id=account, type="nps", score=0))
    return out


def _one_by_one(db: Engine, specs: dict[str, AgentSpec], events: list[EventIn]) -> list[list[str]]:
    """The reference: each event folded and its account rescored on its own."""
    triggers = Triggers(specs)
    now = datetime.now(UTC)
    hits: list[list[str]] = []
    with transaction(db, writes=True) as session:
        history: dict[str, Account] = {}
        for ev in events:
            account = session.get(Account, ev.account_id)
            assert account is not None
            at = ev.occurred_at or now
            payload = ev.model_dump(exclude_none=True)
            if at >= now - LIVE_WINDOW:
                on_event(session, account, payload, at=at, today=now.date())
            else:
                fold(session, account, payload, at, current=False)
                history[account.id] = account
            if at >= now - LIVE_WINDOW and account.status == "active":
                snapshot = get_snapshot(session, account_id=account.id, today=now.date())
                assert snapshot is not None
                body = {"type": ev.type, **ev.model_dump(mode="json", exclude_none=True)}
                hits.append(triggers.matching(snapshot, body, now.date()))
            else:
                hits.append([])
        active = [a for a in history.values() if a.status == "active"]
        if active:
            session.flush()
            score(session, active, today=now.date(), now=now)
    return hits


def _state(db: Engine) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    with Session(db) as s:
        accounts = s.exec(select(Account).order_by(col(Account.id))).all()
        return {
            "accounts": [a.model_dump() for a in accounts],
            "days": sorted(
                tuple(d.model_dump(exclude={"id"}).values()) for d in s.exec(select(AccountDay))
            ),
            "scores": {
                r.account_id: (r.health, r.risk, r.features, r.model_version)
                for r in s.exec(select(AccountScore))
            },
            "health": {a.id: current(s, a, today=today) for a in accounts},
            "alerts": [
                (r.account_id, r.risk, r.reasons)
                for r in s.exec(select(RiskAlert).order_by(col(RiskAlert.id)))
            ],
            "events": [
                (e.account_id, e.type, e.payload)
                for e in s.exec(select(Event).order_by(col(Event.id)))
            ],
        }


@pytest.mark.parametrize("seed", [1, 2])
def test_a_batch_folds_as_the_events_one_by_one(seeded: Path, tmp_path: Path, seed: int) -> None:
    batched, reference = _copy(seeded, tmp_path / "b.db"), _copy(seeded, tmp_path / "r.db")
    ingest = _ingest(batched)
    events = _events(seed, 240)
    want: list[list[str]] = []
    got: list[list[str]] = []
    for at in range(0, len(events), 60):  # several batches: the second one starts warm
        chunk = events[at : at + 60]
        got += [s.agents for s in ingest.store(chunk)]
        want += _one_by_one(reference, ingest.specs, chunk)
        with transaction(reference) as s:
            for ev in chunk:
                s.add(
                    Event(
                        account_id=ev.account_id,
                        type=ev.type,
                        occurred_at=ev.occurred_at or datetime.now(UTC),
                        received_at=datetime.now(UTC),
                        payload=ev.model_dump(mode="json", exclude_none=True),
                    )
                )
        b, r = _state(batched), _state(reference)
        for key in ("accounts", "days", "scores", "health", "alerts", "events"):
            assert b[key] == r[key], (at, key)
    assert got == want and any(got)
    assert _state(batched)["alerts"]  # each upward crossing, with its reasons
    with Session(batched) as s:  # the dispatch intents: every event that triggered, once
        intents = {i.event_id: i.agents for i in s.exec(select(EventDispatch))}
        ids = s.exec(select(Event.id).order_by(col(Event.id))).all()
    assert intents == {i: agents for i, agents in zip(ids, got, strict=True) if agents}


def _assert_scored_from_the_store(db: Engine, account_id: str) -> None:
    """The stored score is the score of what the store holds now."""
    today = datetime.now(UTC).date()
    with Session(db) as s:
        account = s.get(Account, account_id)
        stored = s.get(AccountScore, account_id)
        assert account is not None and stored is not None
        fresh = compute(load_windows(s, [account], today))[0]
    assert stored.features == dict(zip(FEATURES, map(float, fresh), strict=True))


def _login(account: str, logins: int = 1) -> list[EventIn]:
    return [EventIn(account_id=account, type="login", logins=logins)]


def _touch_rollup(session: Session, account: str) -> None:
    """Another writer changes a day the next batch's events do not fall on."""
    day = session.exec(
        select(AccountDay).where(
            AccountDay.account_id == account,
            AccountDay.day == datetime.now(UTC).date() - timedelta(days=10),
        )
    ).first()
    assert day is not None
    day.logins += 500
    session.add(day)
    session.commit()


def test_a_write_by_another_connection_is_seen_by_the_next_batch(
    seeded: Path, tmp_path: Path
) -> None:
    db = _copy(seeded, tmp_path / "a.db")
    ingest = _ingest(db)
    ingest.store(_login(ACCOUNTS[2]))
    other = make_engine(f"sqlite:///{tmp_path / 'a.db'}")  # another process, say
    with Session(other) as s:
        _touch_rollup(s, ACCOUNTS[2])
    ingest.store(_login(ACCOUNTS[2]))
    _assert_scored_from_the_store(db, ACCOUNTS[2])


def test_a_write_on_the_same_connection_is_seen_by_the_next_batch(
    seeded: Path, tmp_path: Path
) -> None:
    db = _copy(seeded, tmp_path / "a.db")
    ingest = _ingest(db)
    ingest.store(_login(ACCOUNTS[3]))
    with Session(db) as s:  # the pool hands out the connection the batch used
        _touch_rollup(s, ACCOUNTS[3])
    ingest.store(_login(ACCOUNTS[3]))
    _assert_scored_from_the_store(db, ACCOUNTS[3])


def test_a_failed_batch_leaves_nothing_warm(
    seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _copy(seeded, tmp_path / "a.db")
    ingest = _ingest(db)
    ingest.store(_login(ACCOUNTS[4]))

    def broken(*_: Any, **__: Any) -> list[int]:
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(Ingest, "_insert", staticmethod(broken))
        with pytest.raises(OSError):
            ten_days_ago = datetime.now(UTC) - timedelta(days=10)
            ingest.store(  # folded, then rolled back
                [
                    EventIn(
                        account_id=ACCOUNTS[4], type="login", logins=900, occurred_at=ten_days_ago
                    )
                ]
            )
    ingest.store(_login(ACCOUNTS[4]))
    _assert_scored_from_the_store(db, ACCOUNTS[4])


def test_triggers_see_a_contact_changed_between_batches(seeded: Path, tmp_path: Path) -> None:
    db = _copy(seeded, tmp_path / "a.db")
    specs = load_specs(Settings().agents_path)
    watcher = specs["adoption"].model_copy(
        update={
            "name": "watcher",
            "trigger": "event.type == 'login' && account.opted_out_contacts > 0",
        }
    )
    ingest = _ingest(db, {"watcher": watcher})
    account = ACCOUNTS[5]
    with transaction(db) as s:
        for c in s.exec(select(Contact).where(Contact.account_id == account)):
            c.opted_out = False
            s.add(c)
    assert ingest.store(_login(account))[0].agents == []
    with transaction(db) as s:
        contact = s.exec(select(Contact).where(Contact.account_id == account)).first()
        assert contact is not None
        contact.opted_out = True
        s.add(contact)
    assert ingest.store(_login(account))[0].agents == ["watcher"]


def test_a_write_while_a_batch_is_planned_is_not_lost(
    seeded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch is planned without the write lock: a writer that commits meanwhile makes
    it plan again, holding the lock."""
    db = _copy(seeded, tmp_path / "a.db")
    ingest, other = _ingest(db), _ingest(make_engine(f"sqlite:///{tmp_path / 'a.db'}"))
    account = ACCOUNTS[1]
    with Session(db) as s:
        before = s.get(Account, account).logins_30d  # type: ignore[union-attr]
    plan = Ingest._plan
    wrote: list[bool] = []

    def planned_then_another_writes(self: Ingest, *args: Any) -> Any:
        out = plan(self, *args)
        if not wrote:
            wrote.append(True)
            other.store(_login(account, logins=5))  # between the planning and the lock
        return out

    monkeypatch.setattr(Ingest, "_plan", planned_then_another_writes)
    ingest.store(_login(account, logins=3))
    with Session(db) as s:
        assert s.get(Account, account).logins_30d == before + 8  # type: ignore[union-attr]
    _assert_scored_from_the_store(db, account)
