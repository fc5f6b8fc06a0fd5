from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from autopilot.runtime.api.deps import CurrentUser, InboxDep
from autopilot.runtime.api.routes.errors import errors
from autopilot.runtime.approvals.models import (
    ApprovalDetail,
    ApprovalPublic,
    BulkCreate,
    BulkResult,
    CommentCreate,
    CommentPublic,
    DecisionCreate,
    EditCreate,
    ListQuery,
    ReassignCreate,
)
from autopilot.runtime.approvals.service import InboxError
from autopilot.runtime.contracts.approval import ApprovalOutcome

router = APIRouter(prefix="/approvals", tags=["approvals"])


def _http(err: InboxError) -> HTTPException:
    return HTTPException(err.status_code, detail=str(err))


@router.get("", response_model=list[ApprovalPublic], responses=errors(401, 422))
async def list_approvals(
    user: CurrentUser, inbox: InboxDep, query: Annotated[ListQuery, Query()]
) -> Response:
    """Approvals you may see (your book, or your organisation), pending by default.
    Paged: `limit` (default 50) and `offset`."""
    # Async on purpose: a page takes about a millisecond of CPU (evals/bench/inbox_cpu.py);
    # run on the event loop it avoids the worker-thread hops and GIL contention that made
    # a busy inbox fall behind. The parameters are one model, validated in one go.
    return Response(
        inbox.list_json(user, **query.model_dump() | {"status": query.status or None}),
        media_type="application/json",
    )


@router.post("/bulk", responses=errors(401, 422))
async def bulk(body: BulkCreate, user: CurrentUser, inbox: InboxDep) -> list[BulkResult]:
    """Approve or reject several items; a result per item."""
    return await inbox.bulk(user, body)


@router.get("/{approval_id}", responses=errors(401, 404, 422))
def get_approval(approval_id: str, user: CurrentUser, inbox: InboxDep) -> ApprovalDetail:
    """The action, its dry-run preview, the policy decision, the account's health and
    its explanation, cost and uplift, the alternatives, and the run's history."""
    try:
        return inbox.detail(user, approval_id)
    except InboxError as err:
        raise _http(err) from err


@router.post("/{approval_id}/decision", responses=errors(401, 403, 404, 409, 422))
async def decide(
    approval_id: str, body: DecisionCreate, user: CurrentUser, inbox: InboxDep
) -> ApprovalOutcome:
    try:
        return await inbox.decide(user, approval_id, body)
    except InboxError as err:
        raise _http(err) from err


@router.post("/{approval_id}/edit", responses=errors(401, 403, 404, 409, 422))
async def edit(
    approval_id: str, body: EditCreate, user: CurrentUser, inbox: InboxDep
) -> ApprovalOutcome:
    """Change the action's arguments; the edited action goes through the policy again."""
    try:
        return await inbox.edit(user, approval_id, body)
    except InboxError as err:
        raise _http(err) from err


@router.post("/{approval_id}/reassign", responses=errors(401, 403, 404, 409, 422))
def reassign(
    approval_id: str, body: ReassignCreate, user: CurrentUser, inbox: InboxDep
) -> ApprovalPublic:
    try:
        return inbox.reassign(user, approval_id, body)
    except InboxError as err:
        raise _http(err) from err


@router.post("/{approval_id}/comments", status_code=201, responses=errors(401, 404, 422))
def comment(
    approval_id: str, body: CommentCreate, user: CurrentUser, inbox: InboxDep
) -> CommentPublic:
    try:
        return inbox.comment(user, approval_id, body)
    except InboxError as err:
        raise _http(err) from err
