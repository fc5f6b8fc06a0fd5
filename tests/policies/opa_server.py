"""A small loopback server speaking OPA's Data API (POST /v1/data/<path>), evaluating
with regopy the same way `opa run --server policies/` would: the remote backend's
tests talk real HTTP to it. (No OPA binary can be installed on these machines.)"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import regopy

from autopilot.runtime.policy.bundle import bundle_data, bundle_files


class OpaLikeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, folder: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        files = bundle_files(folder)
        self.modules = {n: t for n, t in files.items() if n.endswith(".rego")}
        self.data = bundle_data(files)
        self.lock = threading.Lock()
        self.mode = "ok"  # ok | error | slow | undefined

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def evaluate(self, path: str, payload: Any) -> dict[str, Any]:
        interp = regopy.Interpreter()  # fresh per request: no shared state between threads
        interp.log_level = regopy.LogLevel.NONE
        for name, text in self.modules.items():
            interp.add_module(name, text)
        interp.add_data(self.data)
        interp.set_input(payload)
        output = interp.query("x = data." + path.replace("/", "."))
        if not output.ok() or not output.results:
            raise RuntimeError("evaluation failed")
        bindings = output.results[0].__dict__.get("bindings") or {}
        return {"result": bindings["x"]} if "x" in bindings else {}


class _Handler(BaseHTTPRequestHandler):
    server: OpaLikeServer

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:  # the client gave up (the timeout tests)
            pass

    def do_GET(self) -> None:
        self._send(200, {}) if self.path.startswith("/health") else self._send(404, {"code": "not_found"})

    def do_POST(self) -> None:
        if not self.path.startswith("/v1/data/"):
            return self._send(404, {"code": "not_found"})
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        mode = self.server.mode
        if mode == "error":
            return self._send(500, {"code": "internal_error", "message": "boom"})
        if mode == "slow":
            time.sleep(3)
        if mode == "undefined":
            return self._send(200, {})
        try:
            self._send(200, self.server.evaluate(self.path.removeprefix("/v1/data/").split("?")[0], body.get("input")))
        except (RuntimeError, regopy.RegoError, ValueError) as err:
            self._send(500, {"code": "internal_error", "message": str(err)[:200]})


@contextmanager
def opa_like_server(folder: Path) -> Iterator[OpaLikeServer]:
    server = OpaLikeServer(folder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
