"""The API's side: a server span per request (continuing a caller's `traceparent`), and
`GET /metrics` in the Prometheus text format.

The middleware is plain ASGI rather than Starlette's `BaseHTTPMiddleware`, so the span
is current in the endpoint itself, and therefore in the Temporal client calls it makes
(which carry it into the workflow)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from opentelemetry import propagate, trace
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from autopilot.runtime.api.deps import OptionalUser
from autopilot.runtime.approvals.access import Principal
from autopilot.runtime.observability.collector import exposition
from autopilot.runtime.observability.tracing import TRACER


class TraceMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        status = {"code": 500}

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        with TRACER.start_as_current_span(
            f"{method}",
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as current:
            try:
                await self.app(scope, receive, sending)
            finally:
                # The route's template, not the path: one span name per endpoint.
                route = getattr(scope.get("route"), "path", None)
                if route:
                    current.update_name(f"{method} {route}")
                    current.set_attribute("http.route", route)
                current.set_attribute("http.response.status_code", status["code"])
                if status["code"] >= 500:
                    current.set_status(trace.StatusCode.ERROR)


async def _metrics_reader(request: Request, user: OptionalUser) -> Principal | None:
    """Anyone when `metrics_public` (the default; the API binds loopback), else admins."""
    if request.app.state.services.settings.metrics_public:
        return user
    if user is None:
        raise HTTPException(
            401, detail="sign in, or send an API token", headers={"WWW-Authenticate": "Bearer"}
        )
    if "admin" not in user.roles:
        raise HTTPException(403, detail="metrics are for admins (metrics_public is off)")
    return user


router = APIRouter(tags=["observability"])


# Not in the OpenAPI schema: it is for Prometheus (text format, its own auth rule), not
# an operation of the API's clients.
@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(request: Request, _: Annotated[Any, Depends(_metrics_reader)]) -> Response:
    """Prometheus text format: run, decision, gate-latency, tool and ingest counters,
    approvals pending and their age, spend against budget by segment."""
    body = await asyncio.to_thread(exposition, request.app.state.metrics_store)
    return Response(content=body, media_type=CONTENT_TYPE_LATEST)
