"""The sweep's bulk evaluation sees each account as `get_snapshot` does (fields with the
subscriptions' terms today, the stored health, the contacts) and finds the same agents
due, whether the stored score is in the fast form, explained, missing or of another
model; and counts the same compliance work (decisions to record, opt-outs lifted)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, delete, select

from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.accounts.sweep_due import due, snapshots
from autopilot.runtime.agents.specs import load_specs
from autopilot.runtime.agents.triggers import Triggers
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.health.scoring import score
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.compliance import OptOutSeen
from autopilot.runtime.store.customer import AccountScore, Subscription
from autopilot.runtime.store.db import make_engine
from autopilot.tools.builtin import registry
from autopilot.tools.registry import ToolContext
from tests.runtime.accounts.test_compliance_due import offer

TODAY = date(2026, 11, 24)


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    seed_portfolio(engine, n=40, today=TODAY)  # scores in the fast form (no factors)
    with Session(engine) as s:
        ids = list(s.exec(select(Account.id).order_by(col(Account.id))))
        explained = s.get(Account, ids[0])
        assert explained is not None
        score(s, [explained], today=TODAY)  # stored with its factors
        s.exec(delete(AccountScore).where(col(AccountScore.account_id) == ids[1]))  # never scored
        old = s.get(AccountScore, ids[2])
        assert old is not None
        old.model_version, old.health, old.risk = "an-older-model", 99.0, 0.01
        s.add(old)
        churned = s.get(Account, ids[3])
        assert churned is not None
        churned.status = "churned"
        s.add(churned)
        # Terms from a subscription: seats and ARR as of today, the renewal passed moves on.
        s.add(
            Subscription(
                account_id=ids[4],
                product="core",
                mrr=1000.0,
                quantity=42,
                start=TODAY - timedelta(days=400),
                billing_period=12,
            )
        )
        s.commit()
    # Significant decisions: one without its record (ids[5]), one on record (ids[6]).
    offer(engine, ids[5], "k-5")
    offer(engine, ids[6], "k-6")
    registry.call(
        "compliance_record_decisions",
        {"account_id": ids[6]},
        ToolContext(idempotency_key="rec-6", dry_run=False, db=engine),
    )
    with Session(engine) as s:  # an opt-out on record, lifted since (ids[7])
        c = s.exec(select(Contact).where(Contact.account_id == ids[7])).first()
        assert c is not None and not c.opted_out
        s.add(
            OptOutSeen(
                contact_id=c.id, account_id=ids[7], email=c.email, first_seen_at=datetime.now(UTC)
            )
        )
        s.commit()
    yield engine
    engine.dispose()


def specs() -> dict[str, AgentSpec]:
    """The shipped agents, and one more whose audience filter reads the health."""
    shipped = load_specs(Settings().agents_path)
    renewal = shipped["renewal"]
    watch = renewal.model_copy(
        update={
            "name": "watch",
            "trigger": 'event.type == "schedule" && account.health < 60.0',
            "audience": renewal.audience.model_copy(
                update={"filter": "account.seats_purchased >= 10"}
            ),
        }
    )
    return shipped | {"watch": watch}


def test_bulk_snapshots_are_get_snapshot_without_the_reasons(db: Engine) -> None:
    with Session(db) as s:
        ids = list(s.exec(select(Account.id).order_by(col(Account.id))))
        bulk = {snap.id: (org, snap) for org, snap in snapshots(s, ids, TODAY)}
        active = set(s.exec(select(Account.id).where(Account.status == "active")))
        assert set(bulk) == active and ids[3] not in bulk
        for account_id in active:
            one = get_snapshot(s, account_id=account_id, today=TODAY)
            assert one is not None
            org, snap = bulk[account_id]
            assert snap == one.model_copy(update={"health_reasons": []}), account_id
            assert org == "demo"
        assert bulk[ids[4]][1].seats_purchased == 42
        assert {a for a, (_, snap) in bulk.items() if snap.decisions_to_record} == {ids[5]}
        assert {a for a, (_, snap) in bulk.items() if snap.opt_outs_lifted} == {ids[7]}


def test_bulk_evaluation_finds_the_agents_one_by_one_evaluation_finds(db: Engine) -> None:
    triggers = Triggers(specs())
    with Session(db) as s:
        ids = list(s.exec(select(Account.id).order_by(col(Account.id))))
        expected = {}
        for account_id in ids:
            one = get_snapshot(s, account_id=account_id, today=TODAY)
            assert one is not None
            if one.status == "active" and (hits := triggers.due(one, TODAY)):
                expected[account_id] = ("demo", hits)
        assert due(s, triggers, ids, TODAY, None) == expected
        assert any("watch" in hits for _, hits in expected.values())
        only = {a: (o, [h for h in hits if h == "watch"]) for a, (o, hits) in expected.items()}
        assert due(s, triggers, ids, TODAY, ["watch"]) == {a: v for a, v in only.items() if v[1]}
