"""Unknown outcomes in the inbox: actions that may or may not have happened (an email
handed over whose reply was lost, a worker killed mid-call). A person checks and says
"sent", "not sent" or "resend"; the reconciler beside the worker does the rest."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from autopilot.runtime.api.deps import CurrentUser, ServicesDep
from autopilot.runtime.api.routes.errors import errors
from autopilot.runtime.execution.outcomes import CheckError, resolve_as, visible_checks

router = APIRouter(prefix="/outcomes", tags=["outcomes"])


class CheckPublic(BaseModel):
    run_key: str
    workflow_id: str
    agent: str
    account_id: str
    tool: str
    action: dict[str, Any]
    error: str
    status: str
    opened_at: datetime
    resolved_by: str | None
    resolved_at: datetime | None
    note: str
    resends: int


class ResolveCreate(BaseModel):
    outcome: Literal["sent", "not_sent", "resend"]
    note: str = Field("", max_length=500)


class ResolveResult(BaseModel):
    run_key: str
    status: str


@router.get("", response_model=list[CheckPublic], responses=errors(401, 422))
def list_outcomes(
    user: CurrentUser,
    svc: ServicesDep,
    status: Literal["open", "resend", "sent", "not_sent", "resent", "reconciled", "all"] = "open",
    limit: int = Query(200, ge=1, le=1000),
) -> list[CheckPublic]:
    """Actions whose outcome is unknown (open by default), oldest first: your book, or
    your organisation."""
    rows = visible_checks(svc, user, status=status, limit=limit)
    return [CheckPublic.model_validate(r, from_attributes=True) for r in rows]


@router.post(
    "/{run_key:path}/resolve",
    response_model=ResolveResult,
    responses=errors(401, 403, 404, 409, 422),
)
async def resolve_outcome(
    run_key: str, body: ResolveCreate, user: CurrentUser, svc: ServicesDep
) -> ResolveResult:
    """Say what happened to an action with an unknown outcome: `sent` (it is counted as
    executed), `not_sent` (failed), or `resend` (gated again against the policy in force,
    then sent with the same key and Message-ID)."""
    try:
        status = await run_in_threadpool(
            lambda: resolve_as(svc, user, run_key=run_key, verdict=body.outcome, note=body.note)
        )
    except CheckError as err:
        raise HTTPException(err.status_code, detail=str(err)) from err
    return ResolveResult(run_key=run_key, status=status)
