"""FastAPI dependencies, as Annotated aliases. Those without I/O are `async def`, so
FastAPI does not hop to a worker thread for them (each hop costs a request ~0.3 ms)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlmodel import Session

from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.approvals.access import Principal
from autopilot.runtime.approvals.service import Inbox
from autopilot.runtime.auth import users as auth
from autopilot.runtime.services import Services

SESSION_COOKIE = "autopilot_session"


async def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def _db(request: Request) -> Engine:
    return request.app.state.services.db  # type: ignore[no-any-return]


async def _ingest(request: Request) -> Ingest:
    return request.app.state.ingest  # type: ignore[no-any-return]


async def _inbox(request: Request) -> Inbox:
    return request.app.state.inbox  # type: ignore[no-any-return]


# Declared as security schemes so that the OpenAPI schema (and /docs) tells clients how
# to authenticate; neither refuses by itself: current_user answers the 401.
_bearer = HTTPBearer(
    auto_error=False,
    description="An API token from `autopilot users token USER` (expires; can be revoked).",
)
_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="The web inbox's session, after sign-in."
)


async def optional_user(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    sid: Annotated[str | None, Depends(_cookie)],
) -> Principal | None:
    """A bearer API token, or the web session cookie (a few primary-key lookups, run on
    the event loop: cheaper than a hop to a worker thread). An unknown, expired or
    revoked token is no user, even with a session cookie beside it."""
    db = request.app.state.services.db
    if bearer is not None:  # a bare connection: the check is one query (see from_token)
        with db.connect() as conn:
            return auth.from_token(conn, bearer.credentials.strip())
    with Session(db) as session:
        return auth.from_session(session, sid) if sid else None


async def current_user(user: Annotated[Principal | None, Depends(optional_user)]) -> Principal:
    if user is None:
        raise HTTPException(
            401, detail="sign in, or send an API token", headers={"WWW-Authenticate": "Bearer"}
        )
    return user


ServicesDep = Annotated[Services, Depends(_services)]
DbDep = Annotated[Engine, Depends(_db)]
IngestDep = Annotated[Ingest, Depends(_ingest)]
InboxDep = Annotated[Inbox, Depends(_inbox)]
CurrentUser = Annotated[Principal, Depends(current_user)]
OptionalUser = Annotated[Principal | None, Depends(optional_user)]
