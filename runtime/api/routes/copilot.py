"""The CSM Copilot: ask about one account (answers with citations, and suggestions), and
"do it" — a suggestion into the same durable path as any agent's action (the copilot
agent's run, the policy gate, the approval inbox). The account view page with the
Copilot panel is served here too (the web inbox's session cookie and its JSON calls)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from autopilot.runtime.api.deps import CurrentUser, IngestDep, OptionalUser, ServicesDep
from autopilot.runtime.api.routes.errors import errors
from autopilot.runtime.api.routes.web import templates
from autopilot.runtime.copilot import service
from autopilot.runtime.copilot.service import CopilotError

router = APIRouter(prefix="/copilot", tags=["copilot"])
page_router = APIRouter(tags=["web"], include_in_schema=False)

AccountId = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]


class AskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_id: AccountId
    question: Annotated[
        str, StringConstraints(min_length=1, max_length=2000, strip_whitespace=True)
    ]


class CitationOut(BaseModel):
    id: str
    kind: str
    text: str
    url: str | None = None


class SuggestionOut(BaseModel):
    id: str
    kind: str
    title: str
    tool: str
    args: dict[str, Any]
    reason: str
    payload_hash: str


class AskOut(BaseModel):
    answer: str
    kind: str
    mode: str
    sentences: list[dict[str, Any]]
    citations: list[CitationOut]
    flagged: list[str]
    suggestions: list[SuggestionOut]


class DoIn(BaseModel):
    """Only what names the suggestion: the action itself is re-derived on the server."""

    model_config = ConfigDict(extra="forbid")

    account_id: AccountId
    payload_hash: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$", description="the card's hash: refused if stale"
    )


class DoOut(BaseModel):
    request_id: int
    workflow_id: str
    suggestion_id: str
    tool: str
    status: str


class RequestOut(BaseModel):
    request_id: int
    workflow_id: str
    approval: dict[str, Any] | None
    action: dict[str, Any] | None


def _http(err: CopilotError) -> HTTPException:
    kind = {403: "forbidden", 404: "not_found", 409: "conflict"}.get(err.status, "invalid")
    where = "path" if err.field in ("suggestion_id", "request_id") else "body"
    return HTTPException(
        err.status, detail=[{"loc": [where, err.field], "msg": err.msg, "type": kind}]
    )


@router.post("/ask", responses=errors(401, 404, 422))
def ask(body: AskIn, user: CurrentUser, svc: ServicesDep) -> AskOut:
    """An answer about one of your accounts, every sentence citing the facts it rests on
    (health factors, events, approvals, costs, contacts, CRM fields, knowledge), and the
    Copilot's suggestions as proposed actions."""
    try:
        asked = service.ask(svc, user, body.account_id, body.question, chat=service.model_chat(svc))
    except CopilotError as err:
        raise _http(err) from err
    facts = asked.ctx.by_id()
    return AskOut(
        answer=asked.answer.text,
        kind=asked.answer.kind,
        mode=asked.answer.mode,
        sentences=[{"text": s.text, "cites": s.cites} for s in asked.answer.sentences],
        citations=[
            CitationOut(id=c, kind=facts[c].kind, text=facts[c].text, url=facts[c].url)
            for c in asked.answer.cited
        ],
        flagged=asked.answer.flagged,
        suggestions=[SuggestionOut(**s.public()) for s in asked.suggestions],
    )


@router.post(
    "/suggestions/{suggestion_id}/do", status_code=202, responses=errors(401, 403, 404, 409, 422)
)
async def do_it(
    suggestion_id: Annotated[str, StringConstraints(pattern=r"^sug_[0-9a-f]{20}$")],
    body: DoIn,
    user: CurrentUser,
    svc: ServicesDep,
    ingest: IngestDep,
) -> DoOut:
    """Turn a suggestion into the copilot agent's proposed action: it goes through the
    policy gate and, as the copilot agent always asks, into the approval inbox."""
    try:
        out = await service.do_it(
            svc,
            ingest,
            user,
            account_id=body.account_id,
            suggestion_id=suggestion_id,
            payload_hash=body.payload_hash,
        )
    except CopilotError as err:
        raise _http(err) from err
    return DoOut(**out)


@router.get("/requests/{request_id}", responses=errors(401, 404, 422))
def request_status(
    request_id: Annotated[int, Path(ge=1, le=2**63 - 1)], user: CurrentUser, svc: ServicesDep
) -> RequestOut:
    """What became of a "do it": its inbox item, or the action's status after the gate."""
    try:
        return RequestOut(**service.request_status(svc, user, request_id))
    except CopilotError as err:
        raise _http(err) from err


@page_router.get("/inbox/accounts/{account_id}", response_class=HTMLResponse)
def account_page(
    request: Request, account_id: str, user: OptionalUser, svc: ServicesDep
) -> Response:
    """The account view with the Copilot panel."""
    if user is None:
        return RedirectResponse("/login", status_code=303)
    try:
        asked = service.ask(svc, user, account_id, "summary", knowledge=False)
    except CopilotError as err:
        raise HTTPException(err.status, detail=err.msg) from err
    return templates.TemplateResponse(
        request,
        "account.html",
        {"user": user, "account": asked.ctx.account, "facts": asked.ctx.facts},
    )
