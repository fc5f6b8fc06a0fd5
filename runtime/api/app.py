"""The HTTP API: events in, the approval inbox, health."""

from __future__ import annotations

from fastapi import FastAPI

from autopilot.runtime.api.routes import approvals, decisions, events, health
from autopilot.runtime.approvals import ApprovalService
from autopilot.runtime.ingest import Ingest


def create_app(ingest: Ingest, approval_service: ApprovalService) -> FastAPI:
    app = FastAPI(title="CS Autopilot", version="0.1.0")
    app.state.ingest = ingest
    app.state.approvals = approval_service
    app.include_router(events.router)
    app.include_router(approvals.router)
    app.include_router(decisions.router)
    app.include_router(health.router)
    return app
