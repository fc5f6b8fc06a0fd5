"""The inbox list: the API's busiest read (every open inbox polls it), so it is built for
CPU per request. One indexed query for the page and one for its votes, on a bare
connection (no ORM session, no model objects); JSON columns read as their stored text
and either passed through to the response undecoded or decoded with orjson; SQLite's
datetime text parsed with `fromisoformat` rather than the generic type's regex; the
statement built once per filter shape. `evals/bench/inbox_cpu.py` measures it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import String, bindparam, cast, func, or_, select, type_coerce
from sqlalchemy.engine import Connection
from sqlalchemy.sql.base import Executable
from sqlmodel import col

from autopilot.runtime.approvals.access import Principal, open_role
from autopilot.runtime.approvals.models import ApprovalPublic
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.approvals import Approval, ApprovalVote
from autopilot.runtime.store.customer import AccountScore

# The account's churn risk now (Health 2.0, the one health), not as it was when the
# action was proposed: the list, its filter and its sort agree with the panel.
RISK_NOW = func.coalesce(AccountScore.risk, Approval.risk)
JSON_TEXT = ("action", "reasons", "roles", "deciders")
PASSED_THROUGH = ("action", "reasons", "roles")  # sent as stored: never decoded for the API
WHEN = ("created_at", "due_at", "decided_at")
# What a list shows: every column but the gate's full decision and internal keys, and
# `deciders` (read to work out the role you would vote for, not shown).
FIELDS = tuple(n for n in ApprovalPublic.model_fields if n in Approval.model_fields)


def _column(name: str) -> Any:
    if name == "risk":
        return RISK_NOW.label("risk")
    column = getattr(Approval, name)
    if name in JSON_TEXT:
        return cast(column, String).label(name)
    if name in WHEN:  # SQLite's text as it is (Postgres drivers hand datetimes anyway)
        return type_coerce(column, String).label(name)
    return column


# Whether the item has votes: most pages have none, and then their query is not sent.
HAS_VOTES = (
    select(col(ApprovalVote.id)).where(col(ApprovalVote.approval_id) == col(Approval.id)).exists()
)
COLUMNS = (*(_column(n) for n in (*FIELDS, "deciders")), HAS_VOTES.label("has_votes"))
SORTS = {
    "age": col(Approval.created_at),
    "value": col(Approval.value).desc(),
    "risk": RISK_NOW.desc(),
}
VOTE_COLUMNS = (
    col(ApprovalVote.approval_id),
    col(ApprovalVote.role),
    col(ApprovalVote.verdict),
    col(ApprovalVote.actor),
    col(ApprovalVote.reason),
    type_coerce(ApprovalVote.at, String).label("at"),
)
VOTES = (
    select(*VOTE_COLUMNS)
    .where(col(ApprovalVote.approval_id).in_(bindparam("ids", expanding=True)))
    .order_by(col(ApprovalVote.id))
)


@dataclass(frozen=True)
class Filters:
    status: str | None = "pending"
    agent: str | None = None
    account_id: str | None = None
    segment: str | None = None
    role: str | None = None
    min_risk: float | None = None
    min_value: float | None = None
    created_before: datetime | None = None
    sort: str = "age"
    limit: int = 200
    offset: int = 0


EQUALS = ("status", "agent", "account_id", "segment")


@lru_cache(maxsize=512)
def _statement(book_only: bool, present: frozenset[str], sort: str) -> Executable:
    """The page's query for one shape of filters; the values are bound at execution."""
    q = select(*COLUMNS).outerjoin(
        AccountScore, col(AccountScore.account_id) == col(Approval.account_id)
    )
    q = q.where(col(Approval.org_id) == bindparam("org_id"))
    if book_only:  # a CSM: the accounts they own, and items reassigned to them
        book = select(col(Account.id)).where(
            col(Account.org_id) == bindparam("org_id"),
            col(Account.owner_csm) == bindparam("user_id"),
        )
        q = q.where(
            or_(
                col(Approval.account_id).in_(book),
                col(Approval.assigned_to) == bindparam("user_id"),
            )
        )
    for name in EQUALS:
        if name in present:
            q = q.where(getattr(Approval, name) == bindparam(name))
    if "min_risk" in present:
        q = q.where(RISK_NOW >= bindparam("min_risk"))
    if "min_value" in present:
        q = q.where(col(Approval.value) >= bindparam("min_value"))
    if "created_before" in present:
        q = q.where(col(Approval.created_at) <= bindparam("created_before"))
    if "role" in present:  # roles is a JSON list: match the quoted name in its text
        q = q.where(cast(Approval.roles, String).contains(bindparam("role_quoted")))
    return (
        q.order_by(SORTS.get(sort, SORTS["age"]))
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


def _when(value: Any) -> datetime | None:
    """As the column type (UTC-aware) reads it, without its regex: SQLite keeps UTC as
    naive text, Postgres drivers hand back datetimes."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _when_json(value: Any) -> Any:
    """`_when`, for the JSON response: SQLite's 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC) turned
    into what orjson writes for that datetime, with no datetime made in between."""
    if type(value) is str and len(value) == 26 and value[10] == " " and value[19] == ".":
        text = value[:10] + "T" + value[11:]
        return (text[:19] if text.endswith(".000000") else text) + "+00:00"
    return _when(value)


def page(conn: Connection, p: Principal, f: Filters, *, raw_json: bool) -> list[dict[str, Any]]:
    """The page as plain dicts in the public shape (`ApprovalPublic`). `raw_json`:
    `action`, `reasons` and `roles` as orjson fragments of the stored text, datetimes
    as text."""
    present = {name for name in EQUALS if getattr(f, name)}
    present |= {
        name for name in ("min_risk", "min_value", "created_before") if getattr(f, name) is not None
    }
    if f.role:
        present.add("role")
    params: dict[str, Any] = {
        "org_id": p.org_id,
        "limit": f.limit,
        "offset": f.offset,
        **{name: getattr(f, name) for name in present if name != "role"},
    }
    if p.book_only:
        params["user_id"] = p.user_id
    if f.role:
        params["role_quoted"] = f'"{f.role}"'
    rows = conn.execute(_statement(p.book_only, frozenset(present), f.sort), params).all()
    when = _when_json if raw_json else _when
    votes: dict[str, list[dict[str, Any]]] = {}
    if voted := [r[0] for r in rows if r[-1]]:
        for vote in conn.execute(VOTES, {"ids": voted}):
            approval_id, role, verdict, actor, reason, at = tuple(vote)
            votes.setdefault(approval_id, []).append(
                {"role": role, "verdict": verdict, "actor": actor, "reason": reason, "at": when(at)}
            )
    # Most items of a page need the same roles: with no vote yet, the role you would
    # vote for depends only on the stored roles and deciders, so it is worked out once.
    unvoted: dict[tuple[str, str], str | None] = {}
    out = []
    keys = (*FIELDS, "deciders", "has_votes")
    for r in rows:
        item = dict(zip(keys, r, strict=True))
        deciders = item.pop("deciders")
        del item["has_votes"]
        for name in WHEN:
            item[name] = when(item[name])
        mine = votes.get(item["id"])
        can = None
        if item["status"] != "pending":
            pass
        elif mine is None:
            key = (item["roles"], deciders)
            if key not in unvoted:
                unvoted[key] = open_role(p.roles, orjson.loads(key[0]), orjson.loads(key[1]), set())
            can = unvoted[key]
        elif not any(v["actor"] == p.user_id for v in mine):
            voted = {v["role"] for v in mine}
            can = open_role(p.roles, orjson.loads(item["roles"]), orjson.loads(deciders), voted)
        item["votes"] = mine or []
        item["can_decide_as"] = can
        for name in PASSED_THROUGH:
            item[name] = orjson.Fragment(item[name]) if raw_json else orjson.loads(item[name])
        out.append(item)
    return out
