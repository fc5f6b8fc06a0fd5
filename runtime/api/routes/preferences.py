"""The customer's preferences page and RFC 8058 one-click unsubscribe, and the staff's
view of the choices customers made.

No login on the customer's side: the signed token in the link is the credential (it
names one contact of one organisation). Every choice becomes a ConsentRecord and
updates the contact's flags in the same transaction, so the policy gate enforces it
for the very next action."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session, select

from autopilot.runtime.api.deps import CurrentUser, ServicesDep
from autopilot.runtime.api.routes.errors import errors
from autopilot.runtime.approvals.access import accounts_visible_to
from autopilot.runtime.consent import tokens
from autopilot.runtime.services import Services
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.consent import consent_records, contact_in_org, record_choice
from autopilot.runtime.store.db import transaction

router = APIRouter(tags=["consent"])
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")

# A token that is not ours is the client's problem, told plainly: 400 for one that is not
# a token at all, 403 for one whose signature fails (altered, or another deployment's).
_STATUS = {"malformed": 400, "signature": 403}


def _contact(svc: Services, session: Session, token: str, *, lock: bool = False) -> Contact:
    try:
        claims = tokens.verify(tokens.secret(svc.settings), token)
    except tokens.TokenError as err:
        raise HTTPException(_STATUS[err.reason], detail=f"preferences link: {err}") from err
    contact = contact_in_org(session, contact_id=claims.contact_id, org_id=claims.org_id, lock=lock)
    if contact is None:
        raise HTTPException(404, detail="preferences link: it names no contact of ours")
    return contact


def _csrf(svc: Services, token: str) -> str:
    """The form's anti-forgery value: bound to the link, so a form posted from elsewhere
    must both know the link and this value (a cross-site page knows neither)."""
    key = tokens.secret(svc.settings)
    return hmac.new(key, f"csrf.{token}".encode(), hashlib.sha256).hexdigest()


@router.get("/preferences/{token}", response_class=HTMLResponse, include_in_schema=False)
def preferences_page(
    request: Request, token: str, svc: ServicesDep, saved: bool = False
) -> HTMLResponse:
    with Session(svc.db) as session:
        contact = _contact(svc, session, token)
        context: dict[str, Any] = {
            "contact": contact,
            "token": token,
            "csrf": _csrf(svc, token),
            "saved": saved,
            "requested": [
                r.at for r in consent_records(session, kind="access", contact_id=contact.id)
            ],
        }
    response = templates.TemplateResponse(request, "preferences.html", context)
    response.headers["Cache-Control"] = "no-store"  # the page shows who the link belongs to
    response.headers["Referrer-Policy"] = "no-referrer"  # never leak the token to a link
    return response


@router.post("/preferences/{token}", include_in_schema=False)
def save_preferences(
    token: str,
    svc: ServicesDep,
    csrf: Annotated[str, Form()],
    email_opt_out: Annotated[bool, Form()] = False,
    admt_opt_out: Annotated[bool, Form()] = False,
    access_request: Annotated[bool, Form()] = False,
) -> Response:
    """Save the page's choices: only a changed flag (or an access request) is recorded."""
    now = svc.clock()
    with transaction(svc.db, writes=True) as session:
        contact = _contact(svc, session, token, lock=True)
        if not hmac.compare_digest(csrf, _csrf(svc, token)):
            raise HTTPException(403, detail="csrf: the form does not belong to this link")
        if email_opt_out != contact.opted_out:
            choice = "opt_out" if email_opt_out else "opt_in"
            record_choice(
                session,
                contact=contact,
                kind="email",
                choice=choice,
                source="preferences_page",
                now=now,
            )
        if admt_opt_out != contact.admt_opted_out:
            choice = "opt_out" if admt_opt_out else "opt_in"
            record_choice(
                session,
                contact=contact,
                kind="admt",
                choice=choice,
                source="preferences_page",
                now=now,
            )
        if access_request:
            record_choice(
                session,
                contact=contact,
                kind="access",
                choice="request",
                source="preferences_page",
                now=now,
            )
    return RedirectResponse(f"/preferences/{token}?saved=true", status_code=303)


@router.post("/preferences/{token}/unsubscribe", include_in_schema=False)
def one_click_unsubscribe(token: str, svc: ServicesDep) -> dict[str, str]:
    """RFC 8058: the mail client POSTs `List-Unsubscribe=One-Click` here, with no cookie and
    no page; the body is not required (the link alone is the request). Repeating it
    changes nothing and records nothing more."""
    with transaction(svc.db, writes=True) as session:
        contact = _contact(svc, session, token, lock=True)
        if not contact.opted_out:
            record_choice(
                session,
                contact=contact,
                kind="email",
                choice="opt_out",
                source="one_click",
                now=svc.clock(),
            )
    return {"status": "unsubscribed"}


@router.get("/consent-records", responses=errors(401, 422))
def list_consent_records(
    user: CurrentUser,
    svc: ServicesDep,
    kind: Literal["email", "admt", "access"] | None = Query(None),
) -> list[dict[str, Any]]:
    """The customers' choices (unsubscribes, ADMT opt-outs, access requests) on the
    accounts you may see, newest first: an access request is answered from here."""
    visible = accounts_visible_to(user, select(Account.id))
    with Session(svc.db) as session:
        rows = consent_records(session, visible=visible, kind=kind)
    return [r.model_dump(mode="json") for r in rows]
