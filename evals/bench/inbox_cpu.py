"""Inbox CPU per request: the API's own CPU time for `GET /approvals` with 10,000 pending
items, in process, with no network and no load generator: the app is called as ASGI
directly and `time.process_time` is read around N requests. Unlike a latency under
load, this figure does not depend on how busy the machine is, and it bounds the rate
one process can serve (200 req/s on one core leaves 5 ms per request for everything).
The same-run baseline is `GET /health` through the same app and middleware.

    python -m autopilot.evals.bench.inbox_cpu --pending 10000 --n 300 [--profile manager]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autopilot.evals.bench.inbox import add_pending
from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.api.app import create_app
from autopilot.runtime.auth.users import issue_token
from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.services import build_services

# name -> (path, query, user): the bench's own cases (evals/bench/inbox.py).
BATCHES = 5
CASES = {
    "health_static": ("/health", "", "maria"),
    "list_manager": ("/approvals", "", "maria"),
    "list_csm_book": ("/approvals", "", "alice"),
    "list_page_200": ("/approvals", "limit=200", "maria"),
    "list_manager_by_risk": ("/approvals", "sort=risk", "maria"),
}


async def call(app: Any, path: str, query: str, token: str) -> tuple[int, int]:
    """One request through the whole ASGI app (middleware, auth, route): status, bytes."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    out = {"status": 0, "bytes": 0}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["bytes"] += len(message.get("body", b""))

    await app(scope, receive, send)
    return out["status"], out["bytes"]


async def measure(app: Any, tokens: dict[str, str], n: int, profile: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (path, query, user) in CASES.items():
        for _ in range(20):  # warm: caches, statement compilation, the page cache
            status, size = await call(app, path, query, tokens[user])
            assert status == 200, (name, status)
        prof = cProfile.Profile() if profile == name else None
        # In batches: the least CPU of a batch is the figure (a busy machine inflates CPU
        # time too, through caches and frequency; the least-disturbed batch shows the code).
        batches = []
        if prof:
            prof.enable()
        for _ in range(BATCHES):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(max(1, n // BATCHES)):
                await call(app, path, query, tokens[user])
            batches.append((time.process_time() - cpu0, time.perf_counter() - wall0))
        if prof:
            prof.disable()
        per = max(1, n // BATCHES)
        cpu = min(c for c, _ in batches) / per
        out[name] = {
            "n": per * BATCHES,
            "cpu_ms_per_req": round(cpu * 1000, 3),
            "cpu_ms_per_req_mean": round(sum(c for c, _ in batches) / (per * BATCHES) * 1000, 3),
            "wall_ms_per_req": round(sum(w for _, w in batches) / (per * BATCHES) * 1000, 3),
            "bytes": size,
            "max_rate_one_core": round(1 / cpu, 1) if cpu else None,
        }
        if prof:
            pstats.Stats(prof, stream=sys.stderr).sort_stats(
                os.environ.get("PSORT", "cumulative")
            ).print_stats(int(os.environ.get("PN", "40")))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--n", type=int, default=300, help="requests per case")
    parser.add_argument("--profile", choices=list(CASES), default=None, help="cProfile one case")
    parser.add_argument("--out", type=Path, default=None, help="JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autopilot-bench-inbox-cpu-") as tmp:
        settings = Settings(data_dir=Path(tmp), database_url="", smtp_host="")
        services = build_services(settings)
        seed_portfolio(services.db, n=2000)
        add_pending(services.db, args.pending)
        # The list path never reaches Temporal: no client (a store-only Ingest).
        ingest = Ingest(
            services.db,
            None,  # type: ignore[arg-type]
            services.specs,
            task_queue="bench",
            policy=services.policy,
        )
        app = create_app(services, ingest)
        tokens = {u: issue_token(services.db, user_id=u) for u in ("maria", "alice")}
        result = asyncio.run(measure(app, tokens, args.n, args.profile))
        services.db.dispose()
    result["meta"] = {
        "at": datetime.now(UTC).isoformat(),
        "pending": args.pending,
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
