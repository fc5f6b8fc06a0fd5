"""The HTTP API and the web inbox."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.api.headers import SecurityHeaders
from autopilot.runtime.api.routes import (
    accounts,
    approvals,
    copilot,
    decisions,
    events,
    health,
    outcomes,
    preferences,
    web,
)
from autopilot.runtime.api.routes.errors import ErrorOut, FieldError
from autopilot.runtime.approvals.service import Inbox
from autopilot.runtime.observability import http as observability
from autopilot.runtime.observability.collector import store_registry
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
    app.include_router(outcomes.router)
    app.include_router(accounts.router)
    app.include_router(health.router)
    app.include_router(web.router)
    app.include_router(copilot.router)
    app.include_router(copilot.page_router)
    app.include_router(preferences.router)
    app.state.metrics_store = store_registry(services.db, services.policy, services.clock)
    app.include_router(observability.router)  # GET /metrics
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The field and the problem, not the value: a NaN or an infinity cannot be echoed
        # as JSON (that was a 500), and a refused value may be a secret.
        detail = [
            FieldError(loc=list(e["loc"]), msg=e["msg"], type=e["type"]) for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content=ErrorOut(detail=detail).model_dump())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # A body that is not UTF-8 cannot be JSON: FastAPI answers 400 for it, where a JSON
        # syntax error is a 422. One status for "the body is not JSON", as documented.
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            invalid = FieldError(loc=["body"], msg="the body is not UTF-8", type="json_invalid")
            return JSONResponse(status_code=422, content=ErrorOut(detail=[invalid]).model_dump())
        return await http_exception_handler(request, exc)

    app.add_middleware(SecurityHeaders)
    # Outermost: the request's span is current for the handlers and the Temporal calls.
    app.add_middleware(observability.TraceMiddleware)
    return app
