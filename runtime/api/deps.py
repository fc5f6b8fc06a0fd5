"""FastAPI dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from autopilot.runtime.approvals import ApprovalService
from autopilot.runtime.ingest import Ingest


def _ingest(request: Request) -> Ingest:
    return request.app.state.ingest  # type: ignore[no-any-return]


def _approvals(request: Request) -> ApprovalService:
    return request.app.state.approvals  # type: ignore[no-any-return]


def _db(request: Request) -> Engine:
    return request.app.state.ingest.db  # type: ignore[no-any-return]


IngestDep = Annotated[Ingest, Depends(_ingest)]
DbDep = Annotated[Engine, Depends(_db)]
ApprovalsDep = Annotated[ApprovalService, Depends(_approvals)]
