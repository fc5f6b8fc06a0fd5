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
    """Store one event and start the agents it triggers. Events can make agents contact
    customers, so only roles that feed data may post them: integrations, admins,
    managers and VPs for the organisation, a CSM for their own book."""
    if not user.can_feed_book():
        raise HTTPException(403, detail="this role may not post account events")
    try:
        stored = ingest.store(
            [event], org_id=user.org_id, owner=None if user.can_feed else user.user_id
        )
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
