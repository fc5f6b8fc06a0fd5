"""The HTTP API and the web inbox."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.api.routes import accounts, approvals, decisions, events, health, web
from autopilot.runtime.approvals.service import Inbox
from autopilot.runtime.services import Services

STATIC = Path(__file__).parent / "static"


def create_app(services: Services, ingest: Ingest) -> FastAPI:
    app = FastAPI(title="CS Autopilot", version="0.1.0")
    app.state.services = services
    app.state.ingest = ingest
    app.state.inbox = Inbox(services, ingest.client)
    app.include_router(events.router)
    app.include_router(approvals.router)
    app.include_router(decisions.router)
    app.include_router(accounts.router)
    app.include_router(health.router)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
