"""A loopback LLM server for tests and demos: real HTTP on 127.0.0.1 speaking the OpenAI
Chat Completions (POST /v1/chat/completions) and Anthropic Messages (POST /v1/messages)
wire formats, so the official clients' real code paths run without a real model.

It answers from a script (text, tool calls, HTTP errors with Retry-After, malformed
bodies, slow replies), in order, and records every request it received so a test can
assert what was sent: the tool definitions, the model, the key header."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TEXT = "ok"


@dataclass(frozen=True)
class Reply:
    """One scripted answer. `status` != 200 answers an error; `malformed` answers
    200 with a body that is not a chat reply."""

    text: str = ""
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    status: int = 200
    retry_after: str | None = None
    malformed: bool = False
    delay_s: float = 0.0  # a slow reply (the client's or the activity's timeout)
    input_tokens: int = 12
    output_tokens: int = 5

    @classmethod
    def tool(cls, name: str, **arguments: Any) -> Reply:
        return cls(tool_calls=((name, arguments),))

    @classmethod
    def error(cls, status: int, retry_after: str | None = None) -> Reply:
        return cls(status=status, retry_after=retry_after)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # time.monotonic() on arrival


@dataclass
class LlmServer:
    port: int = 0
    script: list[Reply] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        """OpenAI-style (the clients append /chat/completions)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        """Anthropic-style (the client appends /v1/messages)."""
        return f"http://127.0.0.1:{self.port}"

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self.script.extend(replies)

    def _next(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            return self.script.pop(0) if self.script else Reply(text=DEFAULT_TEXT)


def _openai_body(reply: Reply, model: str, n: int) -> dict[str, Any]:
    calls = [
        {
            "id": f"call_{n}_{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        for i, (name, args) in enumerate(reply.tool_calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
        },
    }


def _anthropic_body(reply: Reply, model: str, n: int) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
    content += [
        {"type": "tool_use", "id": f"toolu_{n}_{i}", "name": name, "input": args}
        for i, (name, args) in enumerate(reply.tool_calls)
    ]
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _handler(server: LlmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request log is `server.requests`; stderr stays quiet

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                body = json.loads(raw or b"{}")
            except json.JSONDecodeError:
                body = {"_raw": raw.decode(errors="replace")}
            recorded = Recorded(
                self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
            )
            if self.path not in ("/v1/chat/completions", "/v1/messages"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            reply = server._next(recorded)
            if reply.delay_s:
                time.sleep(reply.delay_s)  # the scripted slowness itself, not a test wait
            n = len(server.requests)
            if reply.status != 200:
                headers = {"retry-after": reply.retry_after} if reply.retry_after else {}
                self._send(reply.status, _error(self.path, reply.status), headers)
            elif reply.malformed:
                self._send_raw(200, b"{not json", "application/json")
            elif self.path == "/v1/messages":
                self._send(200, _anthropic_body(reply, str(body.get("model", "")), n))
            else:
                self._send(200, _openai_body(reply, str(body.get("model", "")), n))

        def _send(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
            self._send_raw(status, json.dumps(obj).encode(), "application/json", headers)

        def _send_raw(
            self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _error(path: str, status: int) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}
    t = kind.get(status, "api_error")
    if path == "/v1/messages":
        return {"type": "error", "error": {"type": t, "message": f"scripted {status}"}}
    return {"error": {"type": t, "message": f"scripted {status}", "code": None, "param": None}}


@contextmanager
def llm_server(*script: Reply) -> Iterator[LlmServer]:
    """A running loopback LLM server (a thread), stopped on exit."""
    state = LlmServer(script=list(script))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, name="llm-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
