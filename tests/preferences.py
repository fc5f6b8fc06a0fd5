"""Shared by the preferences tests: a stack whose links point at a real loopback server,
one automated email sent by a real agent run through the SMTP sink, and the gate asked
again about an action as it would be proposed next."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import uvicorn
from sqlmodel import Session, select

from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.api.app import create_app
from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.policy import ActorIn, Decision
from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.policy.gate import gate_action
from autopilot.runtime.store.accounts import Contact
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.consent import ConsentRecord
from tests.conftest import NOW, Stack, free_port, make_settings, wait_for


@asynccontextmanager
async def served_stack(
    stack_factory: Any, tmp_path: Path, database_url: str, accounts: int = 160
) -> AsyncIterator[tuple[Stack, str]]:
    """The stack, its links pointing at the app served on a real loopback port."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(tmp_path, public_url=base).model_copy(
        update={"database_url": database_url}
    )
    async with stack_factory(settings=settings, accounts=accounts) as stack:
        config = uvicorn.Config(
            create_app(stack.services, stack.ingest),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        await wait_for(lambda: server.started, what="uvicorn")
        try:
            yield stack, base
        finally:
            server.should_exit = True
            await task


@dataclass
class Sent:
    account_id: str
    message: EmailMessage
    record: ActionRecord  # the action that sent it
    snapshot: AccountSnapshot  # the account as the run saw it, before any click

    @property
    def to(self) -> str:
        return str(self.message["To"])

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert isinstance(part, EmailMessage)
        return part.get_content()

    def unsubscribe_url(self) -> str:
        match = re.fullmatch(r"<(https?://[^>]+)>", str(self.message["List-Unsubscribe"]))
        assert match, self.message["List-Unsubscribe"]
        return match.group(1)

    def preferences_url(self) -> str:
        match = re.search(r"(https?://\S+/preferences/[A-Za-z0-9._-]+)", self.body)
        assert match, self.body
        return match.group(1)

    def contact(self, stack: Stack) -> Contact:
        with Session(stack.db) as s:
            row = s.exec(select(Contact).where(Contact.email == self.to)).first()
            assert row is not None
            return row


async def automated_email(stack: Stack) -> Sent:
    """A real Churn Rescue run on a small account: one email, sent without approval."""
    (account,) = stack.pick("smb", max_arr=50_000)
    with Session(stack.db) as s:
        snapshot = get_snapshot(s, account_id=account, today=NOW.date())
    assert snapshot is not None
    (workflow_id,) = {
        w for ev in drop_events(stack.db, account) for w in await stack.post_events([ev])
    }
    result = await stack.run_result(workflow_id)
    assert [o.status for o in result.outcomes] == ["executed"], result
    (mail,) = await wait_for(lambda: stack.mails(), what="the automated email")
    message = email.message_from_string(mail.raw, _class=EmailMessage, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    with Session(stack.db) as s:
        (record,) = s.exec(
            select(ActionRecord).where(
                ActionRecord.account_id == account, ActionRecord.status == "executed"
            )
        ).all()
    return Sent(account, message, record, snapshot)


async def gate_next(
    stack: Stack, record: ActionRecord, *, snapshot: AccountSnapshot | None = None, **change: Any
) -> Decision:
    """The gate's decision on the same action proposed again (optionally changed), about
    the account as a new run would see it, or as `snapshot` saw it."""
    if snapshot is None:
        with Session(stack.db) as s:
            snapshot = get_snapshot(s, account_id=record.account_id, today=NOW.date())
    assert snapshot is not None
    action = ProposedAction.model_validate({**record.payload, **change})
    spec = stack.services.specs[record.agent]
    return await gate_action(
        stack.services,
        run_key=f"{record.run_key}/next",
        action=action,
        account=snapshot,
        spec=spec,
        actor=ActorIn(type="agent", id=spec.name),
        pinned_bundle=None,
    )


def consent_rows(stack: Stack, contact_id: str) -> list[tuple[str, str, str]]:
    with Session(stack.db) as s:
        rows = s.exec(
            select(ConsentRecord)
            .where(ConsentRecord.contact_id == contact_id)
            .order_by(ConsentRecord.id)  # type: ignore[arg-type]
        ).all()
        return [(r.kind, r.choice, r.source) for r in rows]


def codes(decision: Decision) -> set[str]:
    return {v.code for v in decision.deny}
