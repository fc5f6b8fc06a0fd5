"""The compliance work an account has, beyond what its contacts show (opt-outs, missing
notices), each read in one query for a batch: what makes the Compliance agent due on it.

Decisions to record: significant automated decisions that still need their record (or
a fresh one). A decision (an action of a `significant` tool the gate let through) needs one when
`compliance_record_decisions` has none on record for it, or when something its record is
made of moved on after the record was last written: the action itself (status, payload,
any write to it), a gate decision logged for it, or an inbox item or a vote on it.

Conservative: a change that leaves the record's facts as they were still counts (the run
then writes nothing and marks the record reconciled, so it stops counting). Not seen: a
contact's email or notice date edited after the decision (rare; the next change of the
action picks it up).

Opt-outs lifted: contacts compliance saw opted out who opted back in. The run forgets
when it saw their opt-out; kept, a later opt-out would date from the first one, and a
message sent in between would be reported as sent after it."""

from __future__ import annotations

from functools import cache

from sqlalchemy import Select, and_, bindparam, exists, func, or_, select
from sqlmodel import Session

from autopilot.runtime.store.accounts import Contact
from autopilot.runtime.store.actions import ActionRecord, PolicyDecisionRecord
from autopilot.runtime.store.approvals import Approval, ApprovalVote
from autopilot.runtime.store.compliance import AdmtDecision, OptOutSeen
from autopilot.tools.registry import registry


def significant_tools() -> list[str]:
    """As `compliance_record_decisions` reads them: the registry at call time (tools an
    MCP server added included)."""
    # Here, not at the top: the compliance tools import this module (a cycle at import).
    from autopilot.tools import builtin  # noqa: F401, PLC0415 - every shipped tool registered

    return sorted(t.name for t in registry.list() if t.significant)


@cache
def _stale() -> Select:
    """(account, run key) of the actions of the accounts `account_ids` (a parameter, as
    `tools` is) whose decision needs a (fresh) record. Built once: every run's snapshot
    reads it, and building it took longer than running it."""
    a, d = ActionRecord.__table__, AdmtDecision.__table__  # type: ignore[attr-defined]
    p, v = Approval.__table__, ApprovalVote.__table__  # type: ignore[attr-defined]
    g = PolicyDecisionRecord.__table__  # type: ignore[attr-defined]
    since = d.c.updated_at
    item_moved = exists().where(
        p.c.run_key == a.c.run_key,
        or_(
            p.c.created_at > since,
            p.c.decided_at > since,
            exists().where(v.c.approval_id == p.c.id, v.c.at > since),
        ),
    )
    gated = exists().where(g.c.run_key == a.c.run_key, g.c.decided_at > since)
    stale = or_(
        d.c.run_key.is_(None),
        a.c.status != d.c.outcome,
        a.c.payload_hash != d.c.payload_hash,
        a.c.updated_at > since,
        gated,
        item_moved,
    )
    return (
        select(a.c.account_id, a.c.run_key)
        .select_from(a.outerjoin(d, d.c.run_key == a.c.run_key))
        .where(
            and_(
                a.c.account_id.in_(bindparam("account_ids", expanding=True)),
                a.c.tool.in_(bindparam("tools", expanding=True)),
                a.c.status != "denied",  # the gate stopped it: no decision was made
                stale,
            )
        )
    )


def decisions_to_record(session: Session, account_ids: list[str]) -> dict[str, int]:
    """account -> its decisions without an up-to-date record (accounts with none left out),
    in one query for the batch."""
    tools = significant_tools()
    if not account_ids or not tools:
        return {}
    params = {"account_ids": account_ids, "tools": tools}
    return {account_id: n for account_id, n in session.connection().execute(_counts(), params)}


@cache
def _counts() -> Select:
    rows = _stale().subquery()
    return select(rows.c.account_id, func.count()).group_by(rows.c.account_id)


def stale_decisions(session: Session, account_id: str) -> set[str]:
    """The run keys of the account's decisions `decisions_to_record` counts: the record
    tool marks those it finds unchanged as reconciled, so they stop counting."""
    tools = significant_tools()
    if not tools:
        return set()
    params = {"account_ids": [account_id], "tools": tools}
    return {key for _, key in session.connection().execute(_stale(), params)}


def opt_outs_lifted(session: Session, account_ids: list[str]) -> dict[str, int]:
    """account -> its contacts with an opt-out on record who are no longer opted out."""
    if not account_ids:
        return {}
    rows = session.connection().execute(_LIFTED, {"account_ids": account_ids})
    return {account_id: n for account_id, n in rows}


_SEEN, _CONTACT = OptOutSeen.__table__, Contact.__table__  # type: ignore[attr-defined]
_LIFTED = (
    select(_SEEN.c.account_id, func.count())
    .select_from(_SEEN.join(_CONTACT, _CONTACT.c.id == _SEEN.c.contact_id))
    .where(
        _SEEN.c.account_id.in_(bindparam("account_ids", expanding=True)),
        _CONTACT.c.opted_out.is_(False),
    )
    .group_by(_SEEN.c.account_id)
)
