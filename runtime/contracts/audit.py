"""AuditEvent: one step of one action, as written to the hash-chained audit log."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class AuditEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    workflow_id: str
    run_key: str
    step: str
    actor: str
    input_hash: str
    decision: dict[str, Any]
    bundle_hash: str
    spec_hash: str
