"""Compliance tools (CPPA ADMT, GDPR Art. 22): a record of each significant automated
decision, the pre-use notice, opt-outs honoured for actions still in flight, and the
card of the Health 2.0 model in use.

Each is idempotent across calls, not only per idempotency key: the Compliance agent
runs daily with a new key each time, and a second run finds its records and adds
nothing. A dry run does the same work in a transaction it rolls back, so it shows
exactly what would change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from autopilot.runtime.accounts.compliance_due import stale_decisions
from autopilot.runtime.config import get_settings
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.health.model import default_model_dir
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.actions import ActionRecord, PolicyDecisionRecord
from autopilot.runtime.store.approvals import Approval, ApprovalVote
from autopilot.runtime.store.compliance import (
    AdmtDecision,
    AdmtNotice,
    ComplianceGap,
    ModelCardRecord,
    OptOutSeen,
)
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.tools.email import smtp_send
from autopilot.tools.registry import ToolContext, ToolError, registry, tool

BLOCKED = "blocked"  # the execute node refuses an action in this status (code supervisor.blocked)
IN_FLIGHT = ("allowed", "pending")
SHOWN = 20  # list items in an output: outputs stay small, the tables hold the rest
# What ProposedAction.payload_hash covers: recomputed from a logged policy input, it
# finds the gate decision taken on exactly the payload that ran.
PAYLOAD_FIELDS = ("tool", "args", "discount_pct", "high_touch", "hours", "contract_change")
CARD_FIELDS = ("trained_at", "algorithm", "training_window", "validation", "intended_use", "limits")


class ContactOptedOut(ToolError):
    """The contact opted out of automated messages: nothing is sent to them."""

    code = "consent.opted_out"


class AccountArgs(BaseModel):
    account_id: str = Field(min_length=1, max_length=64)


class NoticeArgs(AccountArgs):
    contact_id: str = Field(min_length=1, max_length=64)


class ModelCardArgs(BaseModel):
    """No arguments: the card is the deployment's model (an `account_id` passed is ignored)."""


class Gap(BaseModel):
    code: str
    subject: str  # the action's run key or the contact's id
    detail: str


class DecisionsRecorded(BaseModel):
    account_id: str
    recorded: int  # decisions new on record
    updated: int  # decisions on record whose outcome moved on (pending -> executed, say)
    on_record: int  # every decision on record for the account
    gaps: list[Gap]  # found by this call (each gap is reported once), at most SHOWN
    gaps_found: int
    open_gaps: int  # every gap on record for the account
    opted_out_contacts: int
    dry_run: bool = False


class NoticeSent(BaseModel):
    contact_id: str
    to: str
    status: str  # sent | already_on_record | would_send
    message_id: str
    notice_at: datetime | None
    dry_run: bool = False
    preview: str = ""


class BlockedAction(BaseModel):
    run_key: str
    agent: str
    tool: str
    contact_id: str
    was: str  # allowed | pending


class Suppressed(BaseModel):
    account_id: str
    opted_out_contacts: int
    blocked: int
    actions: list[BlockedAction]  # at most SHOWN
    inbox_items_closed: int
    dry_run: bool = False


class ModelCard(BaseModel):
    day: str
    version: str
    trained_at: str
    algorithm: str
    training_window: str
    metrics: dict[str, Any]
    intended_use: str
    limits: str
    age_days: int | None  # since training
    missing: list[str]  # card fields an auditor expects and the card lacks
    status: str  # created | updated | unchanged
    dry_run: bool = False


# --- shared -----------------------------------------------------------------------


@contextmanager
def _unit(ctx: ToolContext) -> Iterator[Session]:
    """One unit of work, committed (SQLite's write lock taken up front, so two runs queue);
    for a dry run, rolled back."""
    if ctx.db is None:
        raise ToolError("no store configured for compliance tools")
    if ctx.dry_run:
        with Session(ctx.db) as session:  # closed without a commit: nothing is kept
            yield session
        return
    with transaction(ctx.db, writes=True) as session:
        yield session


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite gives naive UTC back


def _account(session: Session, account_id: str) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise ToolError(f"no account {account_id}")
    return account


OptedOut = dict[str, tuple[Contact, datetime]]  # email or id -> contact, opt-out first seen


def _opted_out(session: Session, account_id: str, now: datetime) -> OptedOut:
    """The account's opted-out contacts by lower-cased email and by id, each with when
    compliance first saw the opt-out (now, if this is the first time); a contact who
    opted back in loses that mark."""
    contacts = session.exec(select(Contact).where(Contact.account_id == account_id)).all()
    out: OptedOut = {}
    for c in contacts:
        seen = session.get(OptOutSeen, c.id)
        if not c.opted_out:
            if seen is not None:
                session.delete(seen)
            continue
        if seen is None:
            seen = OptOutSeen(
                contact_id=c.id, account_id=account_id, email=c.email, first_seen_at=now
            )
            session.add(seen)
        out[c.email.lower()] = out[c.id] = (c, _utc(seen.first_seen_at))
    return out


def _addressed_to(action: ActionRecord, opted_out: OptedOut) -> tuple[Contact, datetime] | None:
    """The opted-out contact an action is addressed to (its `to`, or a `contact_id`)."""
    if action.recipient and (hit := opted_out.get(action.recipient.lower())):
        return hit
    contact_id = (action.payload.get("args") or {}).get("contact_id")
    return opted_out.get(contact_id) if isinstance(contact_id, str) else None


def _executed_at(session: Session, action: ActionRecord) -> datetime | None:
    if action.status != "executed":
        return None
    call = session.get(ToolCallRecord, action.run_key)  # the action's key is its call's
    return _utc(call.finished_at if call and call.finished_at else action.updated_at)


def _gate_decision(
    session: Session, action: ActionRecord, items: list[str]
) -> PolicyDecisionRecord | None:
    """The latest logged gate decision on exactly the payload the action holds: under its
    own key, or under an approver's edit of one of its inbox items."""
    keyed = [col(PolicyDecisionRecord.run_key) == action.run_key] + [
        col(PolicyDecisionRecord.run_key).startswith(f"{i}/edit/", autoescape=True) for i in items
    ]
    rows = session.exec(
        select(PolicyDecisionRecord)
        .where(or_(*keyed))
        .order_by(col(PolicyDecisionRecord.id).desc())
    ).all()
    for row in rows:
        judged = row.input.get("action") or {}
        if sha256_hex({k: judged.get(k) for k in PAYLOAD_FIELDS}) == action.payload_hash:
            return row
    return None


def _keep(session: Session, account_id: str, gaps: list[Gap], now: datetime) -> list[Gap]:
    """Store the gaps not on record yet; returns those (a gap is reported once)."""
    new = []
    for g in gaps:
        known = session.exec(
            select(ComplianceGap.id).where(
                ComplianceGap.code == g.code, ComplianceGap.subject == g.subject
            )
        ).first()
        if known is None:
            session.add(ComplianceGap(account_id=account_id, found_at=now, **g.model_dump()))
            new.append(g)
    return new


def _count(session: Session, model: Any, account_id: str) -> int:
    return session.exec(
        select(func.count()).select_from(model).where(model.account_id == account_id)
    ).one()


# --- decision records -------------------------------------------------------------


def _decision(
    session: Session, action: ActionRecord, contacts: list[Contact], now: datetime
) -> tuple[AdmtDecision, list[Gap]]:
    """The decision record of one action, and what an auditor would question about it."""
    items = list(session.exec(select(Approval.id).where(Approval.run_key == action.run_key)))
    gate = _gate_decision(session, action, items)
    judged: dict[str, Any] = gate.input if gate else {}
    seen = (judged.get("action") or {}).get("recipient")  # the recipient as the gate saw it
    args = action.payload.get("args") or {}
    to = (action.recipient or "").lower()
    contact = next(
        (c for c in contacts if (to and c.email.lower() == to) or c.id == args.get("contact_id")),
        None,
    )
    decided_at = _utc(gate.decided_at if gate else action.created_at)
    if seen is not None:
        notice = bool(seen.get("notice_on_record"))
    else:  # the gate saw no recipient (or logged nothing): the contact's notice date decides
        notice = bool(contact and contact.notice_at and _utc(contact.notice_at) <= decided_at)
    reviewers = [
        {"actor": v.actor, "role": v.role, "verdict": v.verdict}
        for v in session.exec(
            select(ApprovalVote)
            .where(col(ApprovalVote.approval_id).in_(items))
            .order_by(col(ApprovalVote.at))
        )
    ]
    edited_by_person = (judged.get("actor") or {}).get("type") == "user"
    record = AdmtDecision(
        run_key=action.run_key,
        account_id=action.account_id,
        agent=action.agent,
        workflow_id=action.workflow_id,
        tool=action.tool,
        payload_hash=action.payload_hash,
        recipient=action.recipient,
        contact_id=contact.id if contact else None,
        discount_pct=action.discount_pct,
        expected_cost=action.expected_cost,
        reason=str(action.payload.get("reason", ""))[:500],
        decided_at=decided_at,
        policy_decision_id=gate.id if gate else None,
        bundle_hash=gate.bundle_hash if gate else "",
        input_hash=gate.input_hash if gate else "",
        gate_outcome=gate.outcome if gate else "",
        notice_on_record=notice,
        human_involved=bool(reviewers) or edited_by_person,
        reviewers=reviewers,
        outcome=action.status,
        executed_at=_executed_at(session, action),
        recorded_at=now,
        updated_at=now,
    )
    key, what = action.run_key, f"{action.tool} by {action.agent}"
    gaps = []
    if gate is None:
        gaps.append(
            Gap(
                code="compliance.no_gate_decision",
                subject=key,
                detail=f"{what}: no logged gate decision on the payload it holds",
            )
        )
    elif gate.outcome == "deny" and action.status == "executed":
        gaps.append(
            Gap(
                code="compliance.executed_after_deny",
                subject=key,
                detail=f"{what}: executed, but the gate denied this payload",
            )
        )
    if not notice:
        gaps.append(
            Gap(code="compliance.no_notice", subject=key, detail=f"{what}: no pre-use notice")
            if contact or seen
            else Gap(
                code="compliance.unknown_recipient",
                subject=key,
                detail=f"{what}: the recipient is no contact of the account, no notice can be shown",
            )
        )
    if action.status == "executed" and not record.human_involved:
        gaps.append(
            Gap(
                code="compliance.no_human_review",
                subject=key,
                detail=f"{what}: executed without a person's review",
            )
        )
    return record, gaps


def _opt_out_gaps(session: Session, account_id: str, opted_out: OptedOut) -> list[Gap]:
    """Messages executed to a contact after they opted out, as far as the store can tell:
    the gate saw the opt-out, or the message left after compliance first saw it. (The
    contact row keeps no opt-out time: earlier sends cannot be placed before or after it.)"""
    if not opted_out:
        return []
    gaps = []
    executed = session.exec(
        select(ActionRecord).where(
            ActionRecord.account_id == account_id, ActionRecord.status == "executed"
        )
    )
    for action in executed:
        hit = _addressed_to(action, opted_out)
        if hit is None:
            continue
        contact, seen = hit
        sent = _executed_at(session, action)
        items = list(session.exec(select(Approval.id).where(Approval.run_key == action.run_key)))
        gate = _gate_decision(session, action, items)
        recipient = ((gate.input.get("action") or {}).get("recipient") or {}) if gate else {}
        if recipient.get("opted_out") is True:
            detail = "the gate saw the opt-out"
        elif sent is not None and sent > seen:
            detail = f"sent {sent.isoformat()}, the opt-out was seen {seen.isoformat()}"
        else:
            continue
        gaps.append(
            Gap(
                code="compliance.opted_out_contacted",
                subject=action.run_key,
                detail=f"{action.tool} by {action.agent} to {contact.id}: {detail}",
            )
        )
    return gaps


def _facts(record: AdmtDecision) -> dict[str, Any]:
    return {
        k: _utc(v) if isinstance(v, datetime) else v
        for k, v in record.model_dump(exclude={"recorded_at", "updated_at"}).items()
    }


@tool(scopes=["compliance:write"], effect="write", kind="task", irreversible=True)
def compliance_record_decisions(args: AccountArgs, ctx: ToolContext) -> DecisionsRecorded:
    """Record each significant automated decision on the account once, and report gaps.

    A record holds what was decided, when, by which agent, the policy bundle and input
    hashes, the outcome, whether the recipient had the ADMT pre-use notice then, and
    whether a person reviewed it. Gaps are what an auditor would question; each is
    reported once and kept. Records are kept too: a rollback does not erase them."""
    now = datetime.now(UTC)
    significant = [t.name for t in registry.list() if t.significant]
    with _unit(ctx) as s:
        _account(s, args.account_id)
        opted_out = _opted_out(s, args.account_id, now)
        actions = s.exec(
            select(ActionRecord)
            .where(
                ActionRecord.account_id == args.account_id,
                col(ActionRecord.tool).in_(significant),
                ActionRecord.status != "denied",  # the gate let it through: a decision was made
            )
            .order_by(col(ActionRecord.created_at), col(ActionRecord.run_key))
        ).all()
        contacts = list(s.exec(select(Contact).where(Contact.account_id == args.account_id)))
        stale = stale_decisions(s, args.account_id)
        read_at = datetime.now(UTC)  # every write read here was committed by now
        recorded = updated = 0
        found: list[Gap] = []
        for action in actions:
            record, gaps = _decision(s, action, contacts, now)
            # As of what it reflects: a write after this makes the account due again.
            record.updated_at = max(read_at, _utc(action.updated_at))
            old = s.get(AdmtDecision, action.run_key)
            if old is None:
                s.add(record)
                recorded += 1
            elif _facts(old) != _facts(record):
                old.sqlmodel_update(record.model_dump(exclude={"recorded_at"}))
                s.add(old)
                updated += 1
            elif action.run_key in stale:
                # Something it is made of was written since, its facts unchanged: marked
                # reconciled, so the account stops counting it as a decision to record.
                old.updated_at = record.updated_at
                s.add(old)
            found += _keep(s, args.account_id, gaps, now)
        found += _keep(s, args.account_id, _opt_out_gaps(s, args.account_id, opted_out), now)
        return DecisionsRecorded(
            account_id=args.account_id,
            recorded=recorded,
            updated=updated,
            on_record=_count(s, AdmtDecision, args.account_id),
            gaps=found[:SHOWN],
            gaps_found=len(found),
            open_gaps=_count(s, ComplianceGap, args.account_id),
            opted_out_contacts=len({c.id for c, _ in opted_out.values()}),
            dry_run=ctx.dry_run,
        )


# --- the pre-use notice -----------------------------------------------------------


def _notice(ctx: ToolContext, contact: Contact, account: Account) -> tuple[EmailMessage, str]:
    """The CPPA ADMT pre-use notice to one contact, and the hash of its text."""
    assert ctx.smtp is not None
    body = (
        f"Hello {contact.name},\n\n"
        f"before we use automated decision-making in managing {account.name}'s subscription, "
        "we want you to know how it works and what your rights are.\n\n"
        "What it does: a churn-risk model (Health 2.0) scores the account from product usage, "
        "support tickets, survey answers and billing events, and software agents use the score "
        "to propose check-ins, guides, renewal offers and discounts.\n\n"
        "Significant decisions (prices, discounts, offers, downgrades) are reviewed by a "
        "person before they reach you.\n\n"
        "Your rights: you may opt out of automated decision-making and automated messages, "
        "ask how a decision about your account was made (its main factors, its logic and "
        "its outcome), and ask a person to review it. Reply to this email to do any of these; "
        "asking will not change how we treat you.\n"
    )
    text_hash = sha256_hex(body)
    msg = EmailMessage()
    msg["From"] = ctx.smtp.mail_from
    msg["To"] = contact.email
    msg["Subject"] = "How we use automated decision-making: your notice and your rights"
    msg["Date"] = formatdate(localtime=False)
    # One notice per person and text: a receiving system can de-duplicate a second copy.
    msg["Message-ID"] = f"<admt-{sha256_hex([contact.id, text_hash])[:32]}@cs-autopilot>"
    msg["X-Idempotency-Key"] = ctx.idempotency_key
    msg.set_content(body)
    return msg, text_hash


@tool(
    scopes=["email:send", "notice:send"],
    effect="external",
    kind="notice",
    cost=0.5,
    irreversible=True,
)
def send_admt_notice(args: NoticeArgs, ctx: ToolContext) -> NoticeSent:
    """Email one contact the ADMT pre-use notice and put it on record.

    The notice says what automated decision-making is used for, that a person reviews
    significant decisions, and how to opt out or ask about a decision. Refused for a
    contact who opted out; a notice already on record is not sent again."""
    if ctx.db is None:
        raise ToolError("no store configured for compliance tools")
    if ctx.smtp is None:
        raise ToolError("no SMTP server configured")
    with Session(ctx.db) as s:
        contact = s.get(Contact, args.contact_id)
        if contact is None or contact.account_id != args.account_id:
            raise ToolError(f"no contact {args.contact_id} on account {args.account_id}")
        if contact.opted_out:
            raise ContactOptedOut(f"contact {contact.id} opted out of automated messages")
        if contact.notice_at is not None:
            given = s.get(AdmtNotice, contact.id)
            return NoticeSent(
                contact_id=contact.id,
                to=contact.email,
                status="already_on_record",
                message_id=given.message_id if given else "",
                notice_at=_utc(contact.notice_at),
                dry_run=ctx.dry_run,
            )
        msg, text_hash = _notice(ctx, contact, _account(s, args.account_id))
    sent = NoticeSent(
        contact_id=contact.id,
        to=contact.email,
        status="would_send",
        message_id=msg["Message-ID"],
        notice_at=None,
        dry_run=True,
        preview=msg.as_string(),
    )
    if ctx.dry_run:
        return sent
    smtp_send(ctx.smtp, msg)
    now = datetime.now(UTC)
    with transaction(ctx.db) as s:  # only once it was sent: a notice on record was given
        row = s.get(Contact, contact.id)
        assert row is not None
        row.notice_at = row.notice_at or now
        s.add(row)
        if s.get(AdmtNotice, contact.id) is None:
            s.add(
                AdmtNotice(
                    contact_id=contact.id,
                    account_id=args.account_id,
                    email=contact.email,
                    message_id=sent.message_id,
                    text_hash=text_hash,
                    sent_at=now,
                )
            )
    return sent.model_copy(
        update={"status": "sent", "notice_at": now, "dry_run": False, "preview": ""}
    )


# --- opt-outs ---------------------------------------------------------------------


@tool(scopes=["actions:block"], effect="write", kind="task", irreversible=True)
def suppress_opted_out(args: AccountArgs, ctx: ToolContext) -> Suppressed:
    """Block every action in flight, of any agent, addressed to a contact who opted out.

    In flight: allowed, or awaiting approval. A blocked action will not run and its inbox
    item closes with the reason; executed actions are left alone. A block is not undone
    by a rollback: the agents propose again if the contact opts back in."""
    now = datetime.now(UTC)
    with _unit(ctx) as s:
        _account(s, args.account_id)
        opted_out = _opted_out(s, args.account_id, now)
        blocked: list[BlockedAction] = []
        closed = 0
        in_flight = s.exec(
            select(ActionRecord)
            .where(
                ActionRecord.account_id == args.account_id,
                col(ActionRecord.status).in_(IN_FLIGHT),
            )
            .order_by(col(ActionRecord.created_at), col(ActionRecord.run_key))
        ).all()
        for action in in_flight:
            hit = _addressed_to(action, opted_out)
            if hit is None:
                continue
            contact = hit[0]
            reason = f"blocked by compliance: contact {contact.id} opted out of automated messages"
            blocked.append(
                BlockedAction(
                    run_key=action.run_key,
                    agent=action.agent,
                    tool=action.tool,
                    contact_id=contact.id,
                    was=action.status,
                )
            )
            action.status, action.rejection_reason, action.updated_at = BLOCKED, reason, now
            s.add(action)
            items = s.exec(
                select(Approval).where(
                    Approval.run_key == action.run_key, Approval.status == "pending"
                )
            )
            for item in items:
                item.status, item.decided_by, item.decided_at = BLOCKED, "compliance", now
                item.decision_reason = reason
                s.add(item)
                closed += 1
        return Suppressed(
            account_id=args.account_id,
            opted_out_contacts=len({c.id for c, _ in opted_out.values()}),
            blocked=len(blocked),
            actions=blocked[:SHOWN],
            inbox_items_closed=closed,
            dry_run=ctx.dry_run,
        )


# --- the model card ---------------------------------------------------------------


def _metrics(card: dict[str, Any]) -> dict[str, Any]:
    early = card.get("early_warning") or {}
    return {
        "validation": card.get("validation") or {},
        "alert_threshold": card.get("alert_threshold"),
        "samples": card.get("samples"),
        "positives": card.get("positives"),
        "early_warning": {
            k: early[k]
            for k in ("accounts", "precision", "recall", "median_lead_days")
            if k in early
        },
    }


@tool(scopes=["compliance:write"], effect="write", kind="task", irreversible=True)
def refresh_model_card(args: ModelCardArgs, ctx: ToolContext) -> ModelCard:
    """Put today's card of the Health 2.0 model in use on record.

    Version, training date and window, validation and early-warning metrics, intended
    use and limits: one record per day and model version; a second call the same day
    changes nothing."""
    settings = ctx.settings or get_settings()
    folder = Path(settings.health_model_dir or default_model_dir())
    try:
        raw = (folder / "card.json").read_text()
        card = json.loads(raw)
        version = str(card["version"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ToolError(f"no readable model card in {folder}: {err}") from err
    now = datetime.now(UTC)
    try:
        age = (now - _utc(datetime.fromisoformat(str(card.get("trained_at"))))).days
    except ValueError:
        age = None
    fields = {
        "version": version,
        "trained_at": str(card.get("trained_at") or ""),
        "algorithm": str(card.get("algorithm") or ""),
        "training_window": str(card.get("training_window") or ""),
        "metrics": _metrics(card),
        "intended_use": str(card.get("intended_use") or ""),
        "limits": str(card.get("limits") or ""),
        "card_hash": sha256_hex(raw.encode()),
    }
    with _unit(ctx) as s:
        row = s.exec(
            select(ModelCardRecord).where(
                ModelCardRecord.day == now.date(), ModelCardRecord.version == version
            )
        ).first()
        if row is None:
            s.add(ModelCardRecord(day=now.date(), refreshed_at=now, **fields))
            status = "created"
        elif row.card_hash != fields["card_hash"]:  # the card was edited today
            row.sqlmodel_update({**fields, "refreshed_at": now})
            s.add(row)
            status = "updated"
        else:
            status = "unchanged"
    return ModelCard(
        day=now.date().isoformat(),
        age_days=age,
        missing=[f for f in CARD_FIELDS if not card.get(f)],
        status=status,
        dry_run=ctx.dry_run,
        **{k: v for k, v in fields.items() if k != "card_hash"},
    )
