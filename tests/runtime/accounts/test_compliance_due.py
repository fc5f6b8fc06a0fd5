"""The Compliance agent is due on an account while one of its significant automated
decisions has no up-to-date record: due once an offer is made, not once the record is
written, due again when the offer's status moves on or a person votes on it. And while
a contact who opted back in still has their old opt-out on record."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.accounts.sweep_due import snapshots
from autopilot.runtime.agents.specs import load_specs
from autopilot.runtime.agents.triggers import Triggers
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.services import make_policy_engine
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.approvals import Approval, ApprovalVote
from autopilot.runtime.store.compliance import OptOutSeen
from autopilot.runtime.store.db import make_engine, transaction
from autopilot.tools.builtin import registry
from autopilot.tools.registry import ToolContext

TODAY = date.today()


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    """A portfolio where no account has compliance work: every contact reachable and
    noticed, no action on record."""
    engine = make_engine(database_url)
    seed_portfolio(engine, n=6, today=TODAY)
    with transaction(engine) as s:
        for c in s.exec(select(Contact)):
            c.opted_out, c.notice_at = False, datetime.now(UTC) - timedelta(days=30)
            s.add(c)
        for a in s.exec(select(ActionRecord)):
            s.delete(a)
    yield engine
    engine.dispose()


def first_account(db: Engine) -> str:
    with Session(db) as s:
        q = select(Account.id).where(Account.status == "active").order_by(col(Account.id))
        found = s.exec(q).first()
    assert found is not None
    return found


def offer(
    db: Engine, account_id: str, key: str, *, tool: str = "send_offer", status: str = "pending"
) -> None:
    action = ProposedAction(
        tool=tool,
        args={"to": "someone@example.com", "discount_pct": 5},
        reason="renewal at risk",
        expected_cost=100.0,
        expected_uplift=0.1,
        discount_pct=5,
    )
    now = datetime.now(UTC)
    with transaction(db) as s:
        row = ActionRecord(
            run_key=key,
            workflow_id=f"wf/{key}",
            agent="renewal",
            account_id=account_id,
            segment="smb",
            tool=tool,
            payload={},
            payload_hash="",
            status=status,
            created_at=now,
            updated_at=now,
        )
        row.take(action)
        s.add(row)


def set_status(db: Engine, key: str, status: str) -> None:
    with transaction(db) as s:
        row = s.get(ActionRecord, key)
        assert row is not None
        row.status, row.updated_at = status, datetime.now(UTC)
        s.add(row)


def record(db: Engine, account_id: str) -> dict:
    ctx = ToolContext(idempotency_key=f"rec-{datetime.now(UTC).isoformat()}", dry_run=False, db=db)
    return registry.call("compliance_record_decisions", {"account_id": account_id}, ctx)


def compliance_due(db: Engine, account_id: str) -> tuple[int, bool]:
    """(decisions to record, compliance due) as a run's snapshot sees the account; the
    sweep's bulk snapshot must agree."""
    triggers = Triggers(load_specs(Settings().agents_path))
    with Session(db) as s:
        one = get_snapshot(s, account_id=account_id, today=TODAY)
        assert one is not None
        bulk = {snap.id: snap for _, snap in snapshots(s, [account_id], TODAY)}[account_id]
    assert bulk.decisions_to_record == one.decisions_to_record
    assert bulk.opt_outs_lifted == one.opt_outs_lifted
    return one.decisions_to_record, "compliance" in triggers.due(one, TODAY, ["compliance"])


def test_compliance_is_due_only_while_a_significant_decision_lacks_its_record(db: Engine) -> None:
    account = first_account(db)
    assert compliance_due(db, account) == (0, False)  # nothing to do: no run

    offer(db, account, "k-offer")
    offer(db, account, "k-mail", tool="send_email")  # not a significant decision
    offer(db, account, "k-denied", status="denied")  # the gate stopped it: none was made
    assert compliance_due(db, account) == (1, True)

    assert record(db, account)["recorded"] == 1
    assert compliance_due(db, account) == (0, False)
    assert record(db, account)["recorded"] == 0  # a second pass changes nothing...
    assert compliance_due(db, account) == (0, False)  # ...and leaves it not due

    set_status(db, "k-offer", "executed")  # the outcome moved on: its record must follow
    assert compliance_due(db, account) == (1, True)
    assert record(db, account)["updated"] == 1
    assert compliance_due(db, account) == (0, False)


def test_a_write_to_the_action_that_changes_no_fact_is_reconciled_once(db: Engine) -> None:
    account = first_account(db)
    offer(db, account, "k-offer")
    record(db, account)
    set_status(db, "k-offer", "pending")  # written again, nothing on record would change
    assert compliance_due(db, account) == (1, True)  # conservative: counted
    assert record(db, account)["updated"] == 0
    assert compliance_due(db, account) == (0, False)  # reconciled: not due every day after


def test_a_vote_on_the_decision_after_its_record_makes_compliance_due(db: Engine) -> None:
    account = first_account(db)
    offer(db, account, "k-offer")
    record(db, account)
    now = datetime.now(UTC)  # after the record was written
    with transaction(db) as s:
        row = s.get(ActionRecord, "k-offer")
        assert row is not None
        s.add(
            Approval(
                id="apr-k",
                workflow_id=row.workflow_id,
                run_key="k-offer",
                agent=row.agent,
                account_id=account,
                action=row.payload,
                payload_hash=row.payload_hash,
                roles=["csm", "finance"],
                reasons=[],
                status="pending",
                created_at=row.created_at,
                due_at=now + timedelta(hours=24),
            )
        )
        s.add(
            ApprovalVote(approval_id="apr-k", role="csm", verdict="approve", actor="dana", at=now)
        )
    assert compliance_due(db, account) == (1, True)
    assert record(db, account)["updated"] == 1  # the reviewer is now on record
    assert compliance_due(db, account) == (0, False)


def test_a_decision_stamped_by_a_clock_ahead_is_not_counted_again_once_recorded(
    db: Engine,
) -> None:
    account = first_account(db)
    offer(db, account, "k-offer")
    with transaction(db) as s:  # written by a worker whose clock runs a minute ahead
        row = s.get(ActionRecord, "k-offer")
        assert row is not None
        row.updated_at = datetime.now(UTC) + timedelta(minutes=1)
        s.add(row)
    assert record(db, account)["recorded"] == 1
    assert compliance_due(db, account) == (0, False)  # the record is as of the action's stamp


def test_an_opt_out_lifted_makes_compliance_due_until_its_mark_is_cleared(db: Engine) -> None:
    account = first_account(db)
    with transaction(db) as s:
        contact = s.exec(select(Contact).where(Contact.account_id == account)).first()
        assert contact is not None
        # Seen opted out by an earlier run; the contact has opted back in since.
        s.add(
            OptOutSeen(
                contact_id=contact.id,
                account_id=account,
                email=contact.email,
                first_seen_at=datetime.now(UTC) - timedelta(days=3),
            )
        )
    with Session(db) as s:
        one = get_snapshot(s, account_id=account, today=TODAY)
        assert one is not None and one.opt_outs_lifted == 1
    assert compliance_due(db, account) == (0, True)
    record(db, account)  # the run's first step forgets the opt-out
    assert compliance_due(db, account) == (0, False)


def test_an_event_trigger_sees_the_same_compliance_counts_as_the_sweep(db: Engine) -> None:
    """The live event path builds its snapshots in bulk too: a trigger that reads the
    counts fires on an event exactly when the run's snapshot has them."""
    specs = load_specs(Settings().agents_path)
    watcher = specs["compliance"].model_copy(
        update={
            "name": "watcher",
            "schedule": None,
            "trigger": 'event.type == "login" && account.decisions_to_record > 0',
        }
    )
    settings = Settings(database_url="")
    ingest = Ingest(
        db,
        None,  # type: ignore[arg-type] - stores and evaluates triggers; starts nothing
        {"watcher": watcher},
        task_queue="none",
        policy=make_policy_engine(settings),
    )
    account = first_account(db)

    def fired(n: int) -> list[str]:
        event = EventIn.model_validate(
            {"id": f"ev-{n}", "type": "login", "account_id": account, "logins": 3}
        )
        (stored,) = ingest.store([event])
        return stored.agents

    assert fired(1) == []
    offer(db, account, "k-offer")
    assert compliance_due(db, account)[0] == 1
    assert fired(2) == ["watcher"]
