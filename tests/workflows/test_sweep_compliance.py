"""The Compliance sweep on the Temporal dev server: no run on an account with nothing to
do, one on an account with a decision to record, and the day's model card on record (and
in the audit log) even when no account is due."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select
from temporalio.service import RPCError

from autopilot.runtime import schedules
from autopilot.runtime.agents.specs import load_specs
from autopilot.runtime.agents.triggers import SCHEDULE_EVENT
from autopilot.runtime.config import Settings
from autopilot.runtime.services import build_services
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.audit import AuditEntry
from autopilot.runtime.store.compliance import ModelCardRecord
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.events import Event
from autopilot.tools.registry import ToolContext
from autopilot.workflows.sweep.model_card import refresh_card
from tests.conftest import NOW, make_settings
from tests.runtime.accounts.test_compliance_due import offer
from tests.workflows.test_sweep import sweep_now, write_specs


def nothing_to_do(db: Any) -> None:
    """Every contact reachable and noticed, no action on record: no compliance work."""
    with transaction(db) as s:
        for c in s.exec(select(Contact)):
            c.opted_out, c.notice_at = False, NOW
            s.add(c)
        for a in s.exec(select(ActionRecord)):
            s.delete(a)


async def test_compliance_sweep_starts_runs_only_where_there_is_work_and_keeps_the_card(
    stack_factory: Any, tmp_path: Path
) -> None:
    name = f"compliance_{uuid.uuid4().hex[:6]}"  # its own schedule on the shared server
    shipped = load_specs(Settings().agents_path)["compliance"]
    folder = write_specs(tmp_path / "agents", {name: shipped.model_copy(update={"name": name})})
    async with stack_factory(
        settings=make_settings(tmp_path, agents_dir=folder), accounts=40
    ) as st:
        try:
            nothing_to_do(st.db)
            quiet = await sweep_now(st, [name])
            assert quiet.started == {} and quiet.accounts > 0
            assert quiet.model_card == "created"  # no account due, the card on record still
            with Session(st.db) as s:
                cards = s.exec(select(ModelCardRecord)).all()
                logged = s.exec(
                    select(AuditEntry).where(col(AuditEntry.run_key).startswith("model_card:"))
                ).all()
            assert len(cards) == 1 and len(logged) == 1

            with Session(st.db) as s:
                account = s.exec(select(Account.id).order_by(col(Account.id))).first()
            assert account is not None
            offer(st.db, account, "k-offer")  # a significant decision without its record
            busy = await sweep_now(st, [name])
            assert busy.started == {name: 1} and busy.model_card == "unchanged"
            with Session(st.db) as s:
                events = s.exec(select(Event).where(Event.type == SCHEDULE_EVENT)).all()
            assert [e.account_id for e in events] == [account]
        finally:
            try:
                await st.client.get_schedule_handle(schedules.schedule_id(name)).delete()
            except RPCError:
                pass  # never created


def test_a_card_stored_without_its_audit_entry_gets_the_entry_on_the_next_sweep(
    tmp_path: Path,
) -> None:
    """A sweep whose first try stored the card and lost its audit entry (a crash, a
    locked store) is retried: the card is then "unchanged", and the entry is written."""
    svc = build_services(make_settings(tmp_path), clock=lambda: NOW)
    ctx = ToolContext(idempotency_key="first-try", dry_run=False, db=svc.db, settings=svc.settings)
    assert svc.tools.call("refresh_model_card", {}, ctx)["status"] == "created"  # no entry

    def logged() -> int:
        with Session(svc.db) as s:
            q = select(AuditEntry).where(col(AuditEntry.run_key).startswith("model_card:"))
            return len(s.exec(q).all())

    assert logged() == 0
    assert refresh_card(svc, None, "sweep-retry") == "unchanged"
    assert logged() == 1
    assert refresh_card(svc, None, "sweep-next") == "unchanged"
    assert logged() == 1  # the same card: one entry
