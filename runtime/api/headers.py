"""Security headers on every response but FastAPI's own doc pages. Plain ASGI rather
than `@app.middleware("http")` (Starlette's BaseHTTPMiddleware): that one runs each
request through a task group and memory streams, which cost the inbox list about a
tenth of its CPU."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The web inbox loads only its own scripts and styles, and is never framed.
HEADERS = (
    (
        b"content-security-policy",
        (
            b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
            b"base-uri 'none'; form-action 'self'"
        ),
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)
UNTOUCHED = ("/docs", "/redoc")  # FastAPI's pages load their own CDN assets


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNTOUCHED):
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in HEADERS if n not in present]  # as setdefault
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)
