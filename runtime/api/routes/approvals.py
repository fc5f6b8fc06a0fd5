from __future__ import annotations

from fastapi import APIRouter, HTTPException

from autopilot.runtime.api.deps import ApprovalsDep
from autopilot.runtime.approvals import ApprovalConflict, ApprovalNotFound, ApprovalPublic, DecisionCreate
from autopilot.runtime.contracts.approval import ApprovalOutcome

router = APIRouter(prefix="/approvals", tags=["approvals"])


@router.get("")
def list_approvals(approvals: ApprovalsDep, status: str | None = "pending", limit: int = 200) -> list[ApprovalPublic]:
    return approvals.list(status=status or None, limit=min(limit, 1000))


@router.get("/{approval_id}")
def get_approval(approval_id: str, approvals: ApprovalsDep) -> ApprovalPublic:
    try:
        return approvals.get(approval_id)
    except ApprovalNotFound as err:
        raise HTTPException(404, detail=f"no approval {approval_id}") from err


@router.post("/{approval_id}/decision")
async def decide(approval_id: str, body: DecisionCreate, approvals: ApprovalsDep) -> ApprovalOutcome:
    try:
        return await approvals.decide(approval_id, body)
    except ApprovalNotFound as err:
        raise HTTPException(404, detail=f"no approval {approval_id}") from err
    except ApprovalConflict as err:
        raise HTTPException(409, detail=str(err)) from err
