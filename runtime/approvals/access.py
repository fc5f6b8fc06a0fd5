"""Who sees and decides what: organisation scoping in every query, CSM books, and the
roles that may decide each required approval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import or_
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.approvals import Approval

T = TypeVar("T")  # a query over accounts, or over their ids

ROLES = ("csm", "manager", "finance", "legal", "vp", "admin", "auditor", "integration")
# Who may feed account events (which can start agents that contact customers): data
# integrations and the people who run CS; a CSM only for the book they own.
FEEDERS = {"integration", "admin", "manager", "vp"}
DECIDING = {"csm", "manager", "finance", "legal", "vp"}
# A higher rank in the line (csm < manager < vp) may decide for a lower one;
# finance and legal decide only their own (or whoever an escalation adds).
LINE_RANK = {"csm": 1, "manager": 2, "vp": 3}


@dataclass(frozen=True)
class Principal:
    user_id: str
    org_id: str
    roles: frozenset[str]
    name: str = ""

    @property
    def book_only(self) -> bool:
        """Only CSMs are limited to their book; other roles see the organisation."""
        return self.roles <= {"csm"}

    @property
    def can_decide(self) -> bool:
        return bool(self.roles & DECIDING)

    @property
    def can_feed(self) -> bool:
        """May post events for any account of the organisation."""
        return bool(self.roles & FEEDERS)

    def can_feed_book(self) -> bool:
        """May post events for the accounts they own (a CSM)."""
        return self.can_feed or "csm" in self.roles

    @property
    def can_manage(self) -> bool:
        return bool(self.roles & {"manager", "vp", "admin"})


def approvals_visible_to(p: Principal, query: SelectOfScalar[Approval]) -> SelectOfScalar[Approval]:
    query = query.where(Approval.org_id == p.org_id)
    if p.book_only:
        book = select(Account.id).where(Account.org_id == p.org_id, Account.owner_csm == p.user_id)
        query = query.where(
            or_(col(Approval.account_id).in_(book), col(Approval.assigned_to) == p.user_id)
        )
    return query


def accounts_visible_to(p: Principal, query: SelectOfScalar[T]) -> SelectOfScalar[T]:
    query = query.where(Account.org_id == p.org_id)
    return query.where(Account.owner_csm == p.user_id) if p.book_only else query


def satisfies(user_roles: frozenset[str], role: str, deciders: list[str]) -> bool:
    """May a user with `user_roles` cast the vote for required `role`? `deciders` are
    the roles allowed for it now (the role itself, plus escalation targets)."""
    for allowed in deciders or [role]:
        if allowed in user_roles:
            return True
        rank = LINE_RANK.get(allowed)
        if rank is not None and any(LINE_RANK.get(r, 0) > rank for r in user_roles):
            return True
    return False


def role_to_cast(p: Principal, item: Approval | Any, voted: set[str]) -> str | None:
    """The required role still open that this person may decide: one they hold (or
    were escalated) first, so a manager fills 'manager' and leaves 'csm' to a CSM."""
    return open_role(p.roles, item.roles, item.deciders, voted)


def open_role(
    user_roles: frozenset[str], roles: list[str], deciders: dict[str, list[str]], voted: set[str]
) -> str | None:
    """`role_to_cast` over plain values (the inbox list reads rows, not objects)."""
    open_roles = [r for r in roles if r not in voted]
    for role in open_roles:
        if user_roles.intersection(deciders.get(role, [role])):
            return str(role)
    for role in open_roles:
        if satisfies(user_roles, role, deciders.get(role, [role])):
            return str(role)
    return None
