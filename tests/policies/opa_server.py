"""A small loopback server speaking OPA's Data API (POST/GET /v1/data/<path>), for the
remote backend's tests. (No OPA binary can be installed on these machines.)

It evaluates with regorus (PyPI `gordon-to-regorus`, a Rust Rego interpreter), not with
regopy, the in-process engine: the parity tests then compare two independent Rego
implementations, not one engine with itself behind HTTP. It loads the folder the way
`opa run --server --bundle policies/` does, on its own code rather than the product's
bundle.py, so a bug there is not shared by both sides.

regorus quirks handled here:
- `regorus.Engine` may only be used on the thread that created it (a pyo3 panic, which
  is a BaseException, otherwise): one evaluator thread owns it, request threads queue.
- `eval_query` turns Rego sets into Python sets and fails on sets of objects; the JSON
  variant returns sets as arrays, like OPA's API.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import regorus

ENGINE = f"regorus {version('gordon-to-regorus')}"

T = TypeVar("T")


def load_bundle(folder: Path) -> regorus.Engine:
    """Every .rego module, and each data.json mounted at its directory's path
    (a/b/data.json is data.a.b); other files (cases.yaml, schemas) are not data."""
    engine = regorus.Engine()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.suffix == ".rego":
            engine.add_policy(rel.as_posix(), path.read_text())
        elif path.name == "data.json":
            doc: Any = json.loads(path.read_text())
            for part in reversed(rel.parent.parts):
                doc = {part: doc}
            engine.add_data_json(json.dumps(doc))  # regorus merges, and refuses conflicts
    if not engine.get_packages():
        raise RuntimeError(f"no .rego modules under {folder}")
    return engine


def data_ref(path: str) -> str:
    """'autopilot/decision' -> 'data["autopilot"]["decision"]', whatever the segments hold."""
    return "data" + "".join(f"[{json.dumps(unquote(p))}]" for p in path.split("/") if p)


class _Evaluator:
    """The one thread that owns the regorus engine."""

    def __init__(self, folder: Path) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="regorus")
        self._engine: regorus.Engine | None = None
        self._run(self._load, folder)

    def _run(self, fn: Callable[..., T], *args: Any) -> T:
        def job() -> T:
            try:
                return fn(*args)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as err:  # noqa: BLE001 - a pyo3 panic is a BaseException
                message = str(err).split("Stack backtrace:")[0].strip()
            # Raised outside the except block, so no traceback holding engine frames
            # reaches the request thread (dropping an engine there would panic).
            raise RuntimeError(message)

        return self._pool.submit(job).result()

    def _load(self, folder: Path) -> None:
        self._engine = load_bundle(folder)

    def _query(self, ref: str, input_json: str | None) -> dict[str, Any]:
        assert self._engine is not None
        engine = self._engine.clone()  # cheap; no input leaks between requests
        try:
            if input_json is not None:
                engine.set_input_json(input_json)
            out = json.loads(engine.eval_query_as_json(ref))
        finally:
            del engine  # on the owning thread, even when evaluation raised
        results = out.get("result") or []
        # An undefined document is {} without "result", as in OPA.
        return {"result": results[0]["expressions"][0]["value"]} if results else {}

    def query(self, ref: str, input_json: str | None) -> dict[str, Any]:
        return self._run(self._query, ref, input_json)

    def close(self) -> None:
        self._run(setattr, self, "_engine", None)
        self._pool.shutdown()


class OpaLikeServer(ThreadingHTTPServer):
    daemon_threads = True
    engine = ENGINE

    def __init__(self, folder: Path) -> None:
        self.evaluator = _Evaluator(folder)
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "ok"  # ok | error | slow | undefined | garbage | oversized

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def evaluate(self, path: str, payload: Any, *, has_input: bool = True) -> dict[str, Any]:
        return self.evaluator.query(data_ref(path), json.dumps(payload) if has_input else None)

    def server_close(self) -> None:
        super().server_close()
        self.evaluator.close()


class _Handler(BaseHTTPRequestHandler):
    server: OpaLikeServer

    def log_message(self, format: str, *args: Any) -> None:
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

    def _data(self, body: dict[str, Any]) -> None:
        path = urlsplit(self.path).path
        if not (path == "/v1/data" or path.startswith("/v1/data/")):
            return self._send(404, {"code": "not_found"})
        mode = self.server.mode
        if mode == "error":
            return self._send(500, {"code": "internal_error", "message": "boom"})
        if mode == "slow":
            time.sleep(3)
        if mode == "undefined":
            return self._send(200, {})
        if mode == "garbage" and path.endswith("/decision"):
            data = b"<html>502 Bad Gateway</html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        try:
            result = self.server.evaluate(
                path.removeprefix("/v1/data"), body.get("input"), has_input="input" in body
            )
        except (RuntimeError, ValueError) as err:
            return self._send(500, {"code": "internal_error", "message": str(err)[:200]})
        if mode == "oversized" and path.endswith("/decision"):  # 20 MB of obligations
            pad = [{"type": "note", "text": "x" * 1000}] * 20_000
            result = {"result": {**result.get("result", {}), "obligations": pad}}
        self._send(200, result)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/health":
            return self._send(200, {})
        self._data({})

    def do_POST(self) -> None:
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        except ValueError as err:
            return self._send(400, {"code": "invalid_parameter", "message": str(err)[:200]})
        if not isinstance(body, dict):
            return self._send(
                400, {"code": "invalid_parameter", "message": "body must be an object"}
            )
        self._data(body)


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
