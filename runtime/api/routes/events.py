from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException
from pydantic import BaseModel

from autopilot.runtime.accounts.ingest import UnknownAccount
from autopilot.runtime.accounts.subscription_events import SubscriptionEventError
from autopilot.runtime.api.deps import CurrentUser, IngestDep
from autopilot.runtime.api.routes.errors import errors
from autopilot.runtime.contracts.event import EventIn

router = APIRouter(prefix="/events", tags=["events"])


class EventAccepted(BaseModel):
    event_id: int
    started: list[str]
    pending: bool = False  # runs still to start (Temporal unreachable): the dispatcher retries
    again: bool = False  # an event with this `id` was stored before: this is that one


@router.post("", status_code=202, responses=errors(401, 403, 422))
async def post_event(
    event: EventIn,
    user: CurrentUser,
    ingest: IngestDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> EventAccepted:
    """Store one event and start the agents it triggers. Events can make agents contact
    customers, so only roles that feed data may post them: integrations, admins,
    managers and VPs for the organisation, a CSM for their own book. With an
    `Idempotency-Key`, a retry returns the first event and counts nothing twice. The
    event is stored (with its dispatch intent) before any run starts: if Temporal is
    down the answer is still 202 with `pending` true, and the dispatcher starts the runs
    when it is back. An event with an `id` is stored once: a re-delivery answers with
    the first (`again`). A subscription event its account's subscriptions cannot take
    (no running subscription of that product...) is a 422 naming the field."""
    if not user.can_feed_book():
        raise HTTPException(403, detail="this role may not post account events")
    try:
        # Off the event loop: the fold holds the store's write lock while other writers
        # finish, and the API must keep answering meanwhile.
        stored = await asyncio.to_thread(
            ingest.store,
            [event],
            org_id=user.org_id,
            owner=None if user.can_feed else user.user_id,
            idempotency_key=idempotency_key,
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
    except SubscriptionEventError as err:
        raise HTTPException(
            422,
            detail=[
                {
                    "loc": ["body", err.field],
                    "msg": err.problem,
                    "type": "value_error.subscription",
                }
            ],
        ) from err
    started = await ingest.dispatch(stored)
    return EventAccepted(
        event_id=stored[0].event_id,
        started=[s.workflow_id for s in started],
        pending=len(started) < len(stored[0].agents),
        again=stored[0].again,
    )
