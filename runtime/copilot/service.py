"""The Copilot's two operations, for the API: `ask` (an answer with citations and the
suggestions) and `do_it` (a suggestion into the durable path). Both see only accounts
the principal may see: another book's or tenant's account is "not found", as a missing
one is. "Do it" stores a `copilot` event and starts the copilot agent's run for it, like
any dispatch; the gate decides and the inbox asks — the API never runs a tool."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from autopilot.runtime.accounts.ingest import DISPATCH_TIMEOUT, Ingest
from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.agents.playbook import Room
from autopilot.runtime.approvals.access import Principal, accounts_visible_to
from autopilot.runtime.contracts.account import Assessment
from autopilot.runtime.contracts.run import AgentRunInput, EventSignal
from autopilot.runtime.copilot import answer as answers
from autopilot.runtime.copilot.context import AccountContext, gather
from autopilot.runtime.copilot.suggest import AGENT, EVENT_TYPE, Suggestion, find, suggestions
from autopilot.runtime.ledger.cbr import period
from autopilot.runtime.llm.client import chat as llm_chat
from autopilot.runtime.llm.config import from_settings
from autopilot.runtime.services import Services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.events import Event, EventDispatch
from autopilot.runtime.store.users import User
from autopilot.workflows.agent_run.workflow import AgentRunWorkflow
from autopilot.workflows.search import run_attributes

log = logging.getLogger(__name__)
DOERS = frozenset({"csm", "manager", "vp", "admin"})  # who may ask for an action


class CopilotError(Exception):
    def __init__(self, status: int, field: str, msg: str) -> None:
        self.status, self.field, self.msg = status, field, msg
        super().__init__(msg)


@dataclass
class Asked:
    ctx: AccountContext
    answer: answers.Answer
    suggestions: list[Suggestion]


def _account(session: Session, user: Principal, account_id: str) -> Account:
    account = session.exec(
        accounts_visible_to(user, select(Account).where(Account.id == account_id))
    ).first()
    if account is None:
        raise CopilotError(404, "account_id", f"no account {account_id}")
    return account


def _suggestions(svc: Services, session: Session, account: Account) -> list[Suggestion]:
    spec = svc.specs.get(AGENT)
    if spec is None:
        return []
    today = svc.clock().date()
    snapshot = get_snapshot(session, account_id=account.id, today=today)
    assert snapshot is not None  # the account was just read
    owner = session.get(User, account.owner_csm)
    return suggestions(
        spec,
        snapshot,
        Assessment(
            health=snapshot.health, risk=snapshot.churn_risk, reasons=snapshot.health_reasons
        ),
        today,
        csm={
            "id": account.owner_csm,
            "name": owner.name if owner else account.owner_csm,
            "email": owner.email if owner else "",
        },
        room=Room(blocked_recipients=[c.email for c in snapshot.contacts if c.opted_out]),
        tool_fields=lambda tool: set(svc.tools.get(tool).args_model.model_fields),
    )


def model_chat(svc: Services) -> answers.ChatFn | None:
    """The configured model, or None offline (the default)."""
    if svc.settings.llm_provider == "offline":
        return None
    config = from_settings(svc.settings)
    return lambda messages: llm_chat(config, messages)


def ask(
    svc: Services,
    user: Principal,
    account_id: str,
    question: str,
    *,
    chat: answers.ChatFn | None = None,
    knowledge: bool = True,
) -> Asked:
    now = svc.clock()
    since, _ = period(now, None)
    with Session(svc.db) as session:
        account = _account(session, user, account_id)
        ctx = gather(
            session,
            account,
            today=now.date(),
            since=since,
            settings=svc.settings if knowledge else None,
            question=question,
        )
        items = _suggestions(svc, session, account)
    answer = (
        answers.with_model(ctx, question, chat)
        if chat is not None
        else answers.offline(ctx, question, items)
    )
    return Asked(ctx, answer, items)


async def do_it(
    svc: Services,
    ingest: Ingest,
    user: Principal,
    *,
    account_id: str,
    suggestion_id: str,
    payload_hash: str | None,
) -> dict[str, Any]:
    """The suggestion, re-derived here from its id, becomes a `copilot` event and the
    copilot agent's run on it (its own workflow per request, so a second request does not
    merge into a run still waiting for an approval)."""
    if not user.roles & DOERS:
        raise CopilotError(403, "suggestion_id", "your role may read the Copilot, not act")
    event_id, segment, suggestion = await asyncio.to_thread(
        _store, svc, user, account_id, suggestion_id, payload_hash
    )
    wf_id = f"agent:{AGENT}:{account_id}:{event_id}"
    signal = EventSignal(event_id=event_id, type=EVENT_TYPE)
    try:
        await ingest.client.start_workflow(
            AgentRunWorkflow.run,
            AgentRunInput(
                agent=AGENT,
                account_id=account_id,
                event=signal,
                spec_hash=ingest.spec_hashes[AGENT],
                bundle_hash=ingest.policy.bundle_hash,
            ),
            id=wf_id,
            task_queue=ingest.task_queue,
            start_signal="event",
            start_signal_args=[signal],
            search_attributes=run_attributes(AGENT, account_id, segment)
            if ingest.search_attributes
            else None,
            rpc_timeout=DISPATCH_TIMEOUT,
        )
    except (RPCError, TemporalError, OSError, TimeoutError) as err:
        # The intent stays pending: the dispatcher starts the run when Temporal is back.
        log.warning("copilot request %s not started yet: %s", event_id, err)
        return _request(event_id, wf_id, suggestion, "queued")
    await asyncio.to_thread(_dispatched, svc, event_id)
    return _request(event_id, wf_id, suggestion, "started")


def _request(event_id: int, wf_id: str, s: Suggestion, status: str) -> dict[str, Any]:
    return {
        "request_id": event_id,
        "workflow_id": wf_id,
        "suggestion_id": s.id,
        "tool": s.action.tool,
        "status": status,
    }


def _store(
    svc: Services, user: Principal, account_id: str, suggestion_id: str, payload_hash: str | None
) -> tuple[int, str, Suggestion]:
    now = datetime.now(UTC)
    with transaction(svc.db, writes=True) as session:
        account = _account(session, user, account_id)
        if account.status != "active":
            raise CopilotError(409, "account_id", f"account {account_id} is {account.status}")
        suggestion = find(_suggestions(svc, session, account), suggestion_id)
        if suggestion is None:
            raise CopilotError(
                404, "suggestion_id", f"no suggestion {suggestion_id} for this account"
            )
        if payload_hash is not None and payload_hash != suggestion.payload_hash:
            raise CopilotError(
                409, "payload_hash", "the suggestion changed since it was shown: ask again"
            )
        row = Event(
            account_id=account.id,
            type=EVENT_TYPE,
            occurred_at=now,
            received_at=now,
            payload={
                "kind": suggestion.kind,
                "suggestion_id": suggestion.id,
                "payload_hash": suggestion.payload_hash,
                "requested_by": user.user_id,
            },
        )
        session.add(row)
        session.flush()
        assert row.id is not None
        session.add(
            EventDispatch(
                event_id=row.id,
                account_id=account.id,
                type=EVENT_TYPE,
                agents=[AGENT],
                created_at=now,
            )
        )
        return row.id, account.segment, suggestion


def _dispatched(svc: Services, event_id: int) -> None:
    with transaction(svc.db, writes=True) as session:
        intent = session.get(EventDispatch, event_id)
        event = session.get(Event, event_id)
        if intent is not None:
            intent.attempts += 1
            intent.dispatched_at = datetime.now(UTC)
            session.add(intent)
        if event is not None:
            event.dispatched = True
            session.add(event)


def request_status(svc: Services, user: Principal, request_id: int) -> dict[str, Any]:
    """What became of a "do it": the inbox item it opened, or the gate's decision."""
    with Session(svc.db) as session:
        event = session.get(Event, request_id)
        if event is None or event.type != EVENT_TYPE:
            raise CopilotError(404, "request_id", f"no copilot request {request_id}")
        _account(session, user, event.account_id)  # not yours: not found
        wf_id = f"agent:{AGENT}:{event.account_id}:{request_id}"
        approval = session.exec(
            select(Approval)
            .where(Approval.workflow_id == wf_id)
            .order_by(col(Approval.created_at).desc())
        ).first()
        action = session.exec(select(ActionRecord).where(ActionRecord.workflow_id == wf_id)).first()
    return {
        "request_id": request_id,
        "workflow_id": wf_id,
        "approval": {"id": approval.id, "status": approval.status, "tool": approval.tool}
        if approval
        else None,
        "action": {"status": action.status, "tool": action.tool} if action else None,
    }
