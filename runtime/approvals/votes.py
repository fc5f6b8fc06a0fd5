"""Storing a vote: its row, and the item's status once it is decided. Prebuilt
statements on the caller's connection (a vote is stored on the approval path, between
the approver's click and the send): a retry finds its vote there and changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from autopilot.runtime.contracts.approval import ApprovalOutcome, ApprovalVote
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.approvals import ApprovalVote as VoteRow


class NoApproval(LookupError):
    """The vote names an item the inbox does not have."""


_A: Any = Approval.__table__.c  # pyright: ignore[reportAttributeAccessIssue]
_V: Any = VoteRow.__table__.c  # pyright: ignore[reportAttributeAccessIssue]
_ITEM = select(_A.status, _A.roles).where(_A.id == bindparam("b_id"))
_VOTED = select(_V.role).where(_V.approval_id == bindparam("b_id"))


def _add(dialect: Any) -> Any:
    """The vote's insert, race-safe: the API (answering the approver) and the run's next
    step may store the same deciding vote at once; the second insert does nothing."""
    return (
        dialect.insert(VoteRow)
        .values(
            approval_id=bindparam("b_id"),
            role=bindparam("b_role"),
            verdict=bindparam("b_verdict"),
            actor=bindparam("b_actor"),
            reason=bindparam("b_reason"),
            at=bindparam("b_at", type_=_V.at.type),
        )
        .on_conflict_do_nothing(index_elements=["approval_id", "role"])
    )


_ADD = {"postgresql": _add(postgresql), "sqlite": _add(sqlite)}
_DECIDE = (
    update(Approval)
    .where(_A.id == bindparam("b_id"), _A.status == "pending")
    .values(
        status=bindparam("b_status"),
        decided_by=bindparam("b_actor"),
        decided_at=bindparam("b_at", type_=_A.decided_at.type),
        decision_reason=bindparam("b_reason"),
    )
)


def store_vote(conn: Connection, vote: ApprovalVote) -> ApprovalOutcome:
    """Store one role's verdict; the item is approved when every role approved, rejected
    at the first rejection (an item no longer pending keeps its status)."""
    item = conn.execute(_ITEM, {"b_id": vote.approval_id}).first()
    if item is None:
        raise NoApproval(f"no approval {vote.approval_id}")
    status, roles = item
    at = vote.decided_at or datetime.now(UTC)
    bound = {
        "b_id": vote.approval_id,
        "b_actor": vote.actor,
        "b_reason": vote.reason,
        "b_at": at if at.tzinfo else at.replace(tzinfo=UTC),
    }
    conn.execute(_ADD[conn.dialect.name], {**bound, "b_role": vote.role, "b_verdict": vote.verdict})
    voted = set(conn.execute(_VOTED, {"b_id": vote.approval_id}).scalars())
    remaining = [r for r in roles if r not in voted]
    if status == "pending" and (vote.verdict == "reject" or not remaining):
        status = "rejected" if vote.verdict == "reject" else "approved"
        conn.execute(_DECIDE, {**bound, "b_status": status})
    return ApprovalOutcome(
        approval_id=vote.approval_id,
        status=status,
        actor=vote.actor,
        remaining_roles=remaining,
        decided_at=bound["b_at"],
    )
