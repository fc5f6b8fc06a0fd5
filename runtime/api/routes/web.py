"""The web inbox: server-rendered pages (Jinja2), a little plain JavaScript for the
keyboard and the actions (which call the JSON API with the session cookie)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from autopilot.runtime.api.deps import SESSION_COOKIE, InboxDep, OptionalUser, ServicesDep
from autopilot.runtime.approvals.metrics import manager_view
from autopilot.runtime.approvals.service import InboxError
from autopilot.runtime.auth import users as auth
from autopilot.runtime.execution.outcomes import visible_checks

router = APIRouter(tags=["web"], include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context)


@router.get("/", response_class=HTMLResponse)
def home(user: OptionalUser) -> Response:
    return RedirectResponse("/inbox" if user else "/login", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return _page(request, "login.html", error=None)


def _https(request: Request, public_url: str) -> bool:
    if public_url:
        return public_url.startswith("https://")
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    return proto.split(",")[0].strip() == "https"


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request, svc: ServicesDep, email: str = Form(...), password: str = Form(...)
) -> Response:
    try:
        sid, _ = auth.login(
            svc.db, email=email, password=password, hours=svc.settings.session_hours
        )
    except auth.LockedOut:
        page = _page(request, "login.html", error="Too many failed sign-ins: try again in a while.")
        page.status_code = 429
        return page
    except auth.AuthError:
        return _page(request, "login.html", error="Wrong email or password.")
    response = RedirectResponse("/inbox", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        sid,
        httponly=True,
        samesite="strict",
        # Secure whenever the page is served over HTTPS (directly or behind a TLS proxy).
        secure=_https(request, svc.settings.public_url),
        max_age=int(svc.settings.session_hours * 3600),
    )
    return response


@router.post("/logout")
def logout(request: Request, svc: ServicesDep) -> Response:
    if sid := request.cookies.get(SESSION_COOKIE):
        auth.logout(svc.db, sid)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/inbox", response_class=HTMLResponse)
def inbox_page(
    request: Request,
    user: OptionalUser,
    inbox: InboxDep,
    status: str = "pending",
    segment: str | None = None,
    role: str | None = None,
    sort: str = "age",
) -> Response:
    if user is None:
        return RedirectResponse("/login", status_code=303)
    items = inbox.rows(
        user,
        status=status or None,
        segment=segment or None,
        role=role or None,
        sort=sort,
        limit=500,
    )
    return _page(
        request,
        "inbox.html",
        user=user,
        items=items,
        checks=visible_checks(request.app.state.services, user, limit=100),
        status=status,
        segment=segment or "",
        role=role or "",
        sort=sort,
    )


@router.get("/inbox/{approval_id}/panel", response_class=HTMLResponse)
def panel(request: Request, approval_id: str, user: OptionalUser, inbox: InboxDep) -> HTMLResponse:
    if user is None:
        raise HTTPException(401)
    try:
        item = inbox.detail(user, approval_id)
    except InboxError as err:
        raise HTTPException(err.status_code, detail=str(err)) from err
    return _page(request, "panel.html", user=user, item=item)


@router.get("/manager", response_class=HTMLResponse)
def manager_page(request: Request, user: OptionalUser, svc: ServicesDep) -> Response:
    if user is None:
        return RedirectResponse("/login", status_code=303)
    if not (user.roles & {"manager", "vp", "admin", "auditor", "finance"}):
        raise HTTPException(
            403, detail="the manager view is for managers, finance, VPs, admins and auditors"
        )
    return _page(
        request, "manager.html", user=user, m=manager_view(svc, org_id=user.org_id, now=svc.clock())
    )
