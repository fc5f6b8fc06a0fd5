"""Unknown outcomes, never silent: each becomes an open check in the inbox until a person
says what happened ("sent", "not sent", "resend") or the receiver is asked and answers.

The reconciler beside the worker asks where it can: a tool whose receiver
de-duplicates by the idempotency key (the CRM) is called again with the same key; a call
whose late attempt finished after all is closed as it ended. A resend a person asked for
is gated again against the policy in force, then sent with the same key (an email keeps
its Message-ID, so a receiver that got the first copy can drop the second)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.approvals.access import Principal, accounts_visible_to
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.contracts.policy import ActorIn
from autopilot.runtime.contracts.tool import ToolCall
from autopilot.runtime.execution.executor import execute_once
from autopilot.runtime.ledger.cbr import book_action_cost
from autopilot.runtime.loops import every
from autopilot.runtime.policy.gate import Reservation, gate_action
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.services import Services
from autopilot.runtime.store import audit
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.outcomes import OutcomeCheck
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.tools.registry import ToolError, ToolOutcomeUnknown, ToolUnavailable

log = logging.getLogger(__name__)
Verdict = Literal["sent", "not_sent", "resend"]


# Who may say what happened: the account's CSM, and the people who run CS.
RESOLVERS = frozenset({"csm", "manager", "vp", "admin"})


class CheckError(Exception):
    """The check cannot take this answer: it is closed already."""

    code = "outcome.not_open"
    status_code = 409


class CheckNotFound(CheckError):
    code, status_code = "outcome.not_found", 404


class CheckForbidden(CheckError):
    code, status_code = "outcome.forbidden", 403


def open_check(session: Session, action: ActionRecord, *, error: str, now: datetime) -> None:
    """Open the check for an action whose outcome is unknown (in the caller's transaction,
    with the action's own status change). A check already open stays as it is."""
    row = session.get(OutcomeCheck, action.run_key)
    if row is not None and row.status in ("open", "resend"):
        return
    account = session.get(Account, action.account_id)
    if row is None:
        row = OutcomeCheck(
            run_key=action.run_key,
            org_id=account.org_id if account else "demo",
            workflow_id=action.workflow_id,
            agent=action.agent,
            account_id=action.account_id,
            tool=action.tool,
            action=action.payload,
            opened_at=now,
        )
    row.status, row.error = "open", error[:500]
    row.resolved_by = row.resolved_at = None
    session.add(row)
    log.warning(
        "outcome unknown: %s %s on %s (an inbox check is open)",
        action.agent,
        action.tool,
        action.account_id,
        extra={"run_key": action.run_key, "tool": action.tool},
    )


def _close(
    session: Session,
    check: OutcomeCheck,
    action: ActionRecord | None,
    status: str,
    *,
    by: str,
    now: datetime,
    note: str = "",
) -> None:
    """Close a check as `status` and give its action the matching status: what happened
    is executed (its cost booked once), what did not is failed."""
    check.status, check.resolved_by, check.resolved_at = status, by, now
    check.note = note[:500]
    session.add(check)
    if action is None:
        return
    sent = status in ("sent", "resent", "reconciled")
    action.status, action.updated_at = ("executed" if sent else "failed"), now
    session.add(action)
    if sent:
        book_action_cost(session, action, at=now)


def _audit(svc: Services, check: OutcomeCheck, *, what: str, actor: str, detail: dict) -> None:
    audit.append(
        svc.db,
        [
            AuditEvent(
                workflow_id=check.workflow_id,
                run_key=check.run_key,
                step=f"outcome/{check.resends}/{what}",
                actor=actor,
                input_hash=sha256_hex(check.action),
                decision={"outcome": what, **detail},
                bundle_hash=svc.policy.bundle_hash,
                spec_hash="",
                org_id=check.org_id,
            )
        ],
    )


def resolve(svc: Services, *, run_key: str, verdict: Verdict, actor: str, note: str = "") -> str:
    """A person's answer to an open check. "sent": the action happened (executed, its cost
    booked); "not_sent": it did not (failed); "resend": send it again, with the same key,
    after the gate agrees (the reconciler does it). Returns the check's new status."""
    now = svc.clock()
    with transaction(svc.db) as session:
        check = session.get(OutcomeCheck, run_key)
        if check is None or check.status != "open":
            raise CheckError(f"no open check for {run_key}")
        action = session.get(ActionRecord, run_key)
        call = session.get(ToolCallRecord, run_key)
        if verdict == "resend":
            check.status, check.resolved_by, check.resolved_at = "resend", actor, now
            check.note = note[:500]
            session.add(check)
        else:
            _close(session, check, action, verdict, by=actor, now=now, note=note)
        if call is not None:  # the key's state follows the person's word
            call.status = "done" if verdict == "sent" else "failed"
            call.error = f"{verdict} per {actor}"
            call.finished_at = now
            session.add(call)
    _audit(svc, check, what=verdict, actor=f"user:{actor}", detail={"note": note[:500]})
    return check.status


@dataclass
class Reconciled:
    reconciled: int = 0  # the receiver answered: it happened
    resent: int = 0
    still_unknown: int = 0
    not_sent: int = 0


async def reconcile_once(svc: Services) -> Reconciled:
    """One pass over the open checks and the resends people asked for."""
    out = Reconciled()
    with transaction(svc.db) as session:
        checks = list(
            session.exec(
                select(OutcomeCheck).where(col(OutcomeCheck.status).in_(("open", "resend")))
            )
        )
    for check in checks:
        if check.status == "open":
            await _ask_receiver(svc, check, out)
        else:
            await _resend(svc, check, out)
    return out


def _call(svc: Services, check: OutcomeCheck, tools: list[str]) -> ToolCall:
    action = ProposedAction.model_validate(check.action)
    return ToolCall(
        tool=action.tool, args=action.args, idempotency_key=check.run_key, granted=tools
    )


async def _ask_receiver(svc: Services, check: OutcomeCheck, out: Reconciled) -> None:
    with transaction(svc.db) as session:
        call = session.get(ToolCallRecord, check.run_key)
        finished = call is not None and call.status == "done"  # a late attempt landed
    try:
        dedup = svc.tools.get(check.tool).dedup_by_key
    except ToolError:
        dedup = False
    if not finished and not dedup:
        out.still_unknown += 1
        return
    if not finished:
        try:
            await asyncio.to_thread(
                execute_once,
                svc.db,
                svc.tools,
                _call(svc, check, [check.tool]),
                svc.smtp,
                svc.settings,
                read_limits(svc.policy),
            )
        except ToolError as err:  # still no answer: the check stays open
            log.info("reconcile %s: %s", check.run_key, err)
            out.still_unknown += 1
            return
    now = svc.clock()
    with transaction(svc.db) as session:
        row = session.get(OutcomeCheck, check.run_key)
        if row is None or row.status != "open":
            return
        _close(
            session,
            row,
            session.get(ActionRecord, check.run_key),
            "reconciled",
            by="system:reconciler",
            now=now,
            note="the receiver confirmed it",
        )
    out.reconciled += 1
    _audit(svc, check, what="reconciled", actor="system:reconciler", detail={})


async def _resend(svc: Services, check: OutcomeCheck, out: Reconciled) -> None:
    spec = svc.specs.get(check.agent)
    with transaction(svc.db) as session:
        account = get_snapshot(session, account_id=check.account_id, today=svc.clock().date())
    action = ProposedAction.model_validate(check.action)
    actor = check.resolved_by or "unknown"
    if spec is None or account is None:
        verdict, note = "not_sent", "the agent or the account is gone"
    else:
        decision = await gate_action(
            svc,
            run_key=f"{check.run_key}/resend/{check.resends}",
            action=action,
            account=account,
            spec=spec,
            actor=ActorIn(type="user", id=actor),
            pinned_bundle=None,
            reserve=Reservation(
                key=check.run_key, workflow_id=check.workflow_id, agent=check.agent
            ),
        )
        if not decision.allow:
            verdict, note = "not_sent", "denied: " + " ".join(v.code for v in decision.deny)
        else:
            try:
                await asyncio.to_thread(
                    execute_once,
                    svc.db,
                    svc.tools,
                    _call(svc, check, spec.tools),
                    svc.smtp,
                    svc.settings,
                    read_limits(svc.policy),
                )
                verdict, note = "resent", f"resent at {actor}'s request"
            except ToolUnavailable:
                return  # known not sent: the next pass tries again
            except ToolOutcomeUnknown as err:
                verdict, note = "open", str(err)
            except ToolError as err:
                verdict, note = "not_sent", f"{err.code}: {err}"
    now = svc.clock()
    with transaction(svc.db) as session:
        row = session.get(OutcomeCheck, check.run_key)
        if row is None or row.status != "resend":
            return
        row.resends += 1
        if verdict == "open":  # unknown again: back to a person, counted
            row.status, row.error, row.resolved_by, row.resolved_at = "open", note[:500], None, None
            session.add(row)
            out.still_unknown += 1
        else:
            _close(
                session,
                row,
                session.get(ActionRecord, check.run_key),
                verdict,
                by=actor,
                now=now,
                note=note,
            )
            if verdict == "resent":
                out.resent += 1
            else:
                out.not_sent += 1
    _audit(svc, row, what=verdict, actor="system:reconciler", detail={"note": note[:500]})


def _book(user: Principal) -> SelectOfScalar[str] | None:
    """The ids of the accounts in a CSM's book (None: the whole organisation)."""
    return accounts_visible_to(user, select(Account.id)) if user.book_only else None


def visible_checks(
    svc: Services, user: Principal, *, status: str = "open", limit: int = 200
) -> list[OutcomeCheck]:
    """The checks `user` may see (their book, or their organisation), oldest first."""
    with transaction(svc.db) as session:
        query = select(OutcomeCheck).where(OutcomeCheck.org_id == user.org_id)
        if status != "all":
            query = query.where(OutcomeCheck.status == status)
        if (book := _book(user)) is not None:
            query = query.where(col(OutcomeCheck.account_id).in_(book))
        return list(session.exec(query.order_by(col(OutcomeCheck.opened_at)).limit(limit)))


def resolve_as(
    svc: Services, user: Principal, *, run_key: str, verdict: Verdict, note: str = ""
) -> str:
    """`resolve`, for a person: only a check they may see, and only with a role that may
    say what happened (an auditor reads, never decides)."""
    with transaction(svc.db) as session:
        row = session.get(OutcomeCheck, run_key)
        book = _book(user)
        visible = (
            row is not None
            and row.org_id == user.org_id
            and (book is None or row.account_id in set(session.exec(book)))
        )
    if not visible:
        raise CheckNotFound(f"no check {run_key}")
    if not user.roles & RESOLVERS:
        raise CheckForbidden("only a CSM, manager, VP or admin may say what happened")
    return resolve(svc, run_key=run_key, verdict=verdict, actor=user.user_id, note=note)


async def run_reconciler(svc: Services, stop: asyncio.Event, *, interval_s: float = 5.0) -> None:
    """The reconciler loop beside the worker."""

    async def step() -> None:
        done = await reconcile_once(svc)
        if done.reconciled or done.resent or done.not_sent:
            log.info("reconciler: %s", done)

    await every(interval_s, stop, step, what="outcome reconciler")
