from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query
from sqlmodel import Session, select

from autopilot.runtime.api.deps import CurrentUser, DbDep
from autopilot.runtime.api.routes.errors import errors
from autopilot.runtime.approvals.access import accounts_visible_to
from autopilot.runtime.policy.decisions import DecisionPublic, query
from autopilot.runtime.store.accounts import Account

router = APIRouter(prefix="/decisions", tags=["decisions"])


@router.get("", responses=errors(401, 422))
def list_decisions(
    user: CurrentUser,
    db: DbDep,
    account_id: str | None = None,
    agent: str | None = None,
    code: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    limit: int = Query(200, ge=1, le=1000),
) -> list[DecisionPublic]:
    """The policy decision log, newest first, for the accounts you may see."""
    with Session(db) as session:
        visible = accounts_visible_to(user, select(Account.id))  # type: ignore[arg-type]
        return query(
            session,
            account_id=account_id,
            agent=agent,
            code=code,
            outcome=outcome,
            since=since,
            limit=limit,
            accounts=visible,
        )
