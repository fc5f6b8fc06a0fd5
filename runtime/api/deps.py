"""FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from autopilot.runtime.approvals import ApprovalService
from autopilot.runtime.ingest import Ingest


def _ingest(request: Request) -> Ingest:
    return request.app.state.ingest  # type: ignore[no-any-return]


def _approvals(request: Request) -> ApprovalService:
    return request.app.state.approvals  # type: ignore[no-any-return]


IngestDep = Annotated[Ingest, Depends(_ingest)]
ApprovalsDep = Annotated[ApprovalService, Depends(_approvals)]
