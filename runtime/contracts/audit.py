"""AuditEvent: one step of one action, as written to its organisation's hash-chained
audit log."""

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
    # The organisation whose chain the step goes into. A default, as everywhere in the
    # store (a single-organisation install is "demo"): runs recorded before it still replay.
    org_id: str = "demo"
