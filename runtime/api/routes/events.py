from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from autopilot.runtime.accounts.ingest import UnknownAccount
from autopilot.runtime.api.deps import CurrentUser, IngestDep
from autopilot.runtime.contracts.event import EventIn

router = APIRouter(prefix="/events", tags=["events"])


class EventAccepted(BaseModel):
    event_id: int
    started: list[str]


@router.post("", status_code=202)
async def post_event(event: EventIn, user: CurrentUser, ingest: IngestDep) -> EventAccepted:
    try:
        stored = ingest.store([event], org_id=user.org_id)
    except UnknownAccount as err:
        raise HTTPException(
            422,
            detail=[
                {
                    "loc": ["body", "account_id"],
                    "msg": str(err),
                    "type": "value_error.unknown_account",
                }
            ],
        ) from err
    started = await ingest.dispatch(stored)
    return EventAccepted(event_id=stored[0].event_id, started=[s.workflow_id for s in started])
