from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from autopilot.runtime.api.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(svc: ServicesDep) -> dict[str, Any]:
    """Up, and the policy in force; `policy.refused` names an edit that did not load."""
    status = svc.policy_status
    return {
        "status": "ok",
        "policy": {
            "bundle_hash": status.bundle_hash if status else svc.policy.bundle_hash,
            "refused": status.refused if status else None,
        },
    }
