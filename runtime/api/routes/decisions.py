from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query

from autopilot.runtime.api.deps import DbDep
from autopilot.runtime.decisions import DecisionPublic, query
from autopilot.runtime.store.db import transaction

router = APIRouter(prefix="/decisions", tags=["decisions"])


@router.get("")
def list_decisions(db: DbDep, account_id: str | None = None, agent: str | None = None, code: str | None = None,
                   outcome: str | None = None, since: datetime | None = None,
                   limit: int = Query(200, ge=1, le=1000)) -> list[DecisionPublic]:
    """The policy decision log, newest first; filter by account, agent, deny code, outcome."""
    with transaction(db) as session:
        return query(session, account_id=account_id, agent=agent, code=code, outcome=outcome, since=since,
                     limit=limit)
