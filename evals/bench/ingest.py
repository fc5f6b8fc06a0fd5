"""Sustained ingest through the import path, and the API while it runs.

(a) `autopilot events import`'s path, in its own process on a seeded portfolio: every
line validated first (`parse_jsonl`), unknown accounts checked, then batches of
`IMPORT_BATCH` that each fold, score, evaluate the agents' triggers and write the
dispatch intents to the outbox in one write transaction. Temporal is not needed: the
intents wait in the outbox for the worker's dispatcher; with `--temporal` the import
runs once more starting each batch's runs on an embedded dev server, as the CLI does.
Baseline in the same run: a bare `executemany` of the same rows into a one-table SQLite
file with the store's pragmas, committed per batch (the cost of only writing them down).
(b) The real app under uvicorn on loopback, in its own process: `GET /health`,
`GET /approvals` and `GET /accounts/{id}` (authenticated) at a fixed open-loop rate
(latency counts from each request's scheduled time), and a writer (`POST /events`),
idle and then while the same import runs against its store.

    python -m autopilot.evals.bench.ingest --events 20000 [--temporal]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from sqlmodel import Session, col, func, select
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from autopilot.evals.bench.e2e import pct
from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.agents.specs import load_specs
from autopilot.runtime.api.app import create_app
from autopilot.runtime.auth.users import issue_token
from autopilot.runtime.cli.main import IMPORT_BATCH, parse_jsonl
from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.devstack.stack import free_port, port_open
from autopilot.runtime.devstack.temporal import connect, start_dev_server
from autopilot.runtime.services import build_services, make_policy_engine
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.db import make_engine
from autopilot.runtime.store.events import Event, EventDispatch

DB_FILE = "autopilot.db"
MODULES = ["core", "reports", "automation", "integrations", "admin", "mobile"]


def generate(account_ids: list[str], n: int, *, seed: int = 5) -> list[dict[str, Any]]:
    """`n` live events (the last 20 hours) spread over the accounts: mostly logins and
    feature use, some tickets, usage snapshots, NPS and sentiment."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for _ in range(n):
        ev: dict[str, Any] = {
            "account_id": rng.choice(account_ids),
            "occurred_at": (now - timedelta(minutes=rng.uniform(1, 20 * 60))).isoformat(),
        }
        r = rng.random()
        if r < 0.45:
            ev |= {"type": "login", "logins": rng.randint(1, 6)}
        elif r < 0.70:
            ev |= {"type": "feature_use", "module": rng.choice(MODULES)}
        elif r < 0.80:
            ev |= {"type": "ticket_opened", "priority": rng.choice(["P1", "P2", "P3", "P3"])}
        elif r < 0.87:
            ev |= {"type": "ticket_closed", "priority": rng.choice(["P2", "P3"])}
        elif r < 0.93:
            ev |= {"type": "usage_snapshot", "active_users": rng.randint(1, 80)}
        elif r < 0.97:
            ev |= {"type": "sentiment", "sentiment": round(rng.uniform(-1, 1), 2)}
        else:
            ev |= {"type": "nps", "score": rng.randint(0, 10)}
        out.append(ev)
    return out


def baseline(file: Path, db_path: Path, batch: int) -> dict[str, Any]:
    """The same rows, as the store writes them, by a bare executemany per batch."""
    now = datetime.now(UTC).isoformat()
    rows = [
        (
            ev.account_id,
            ev.type,
            (ev.occurred_at or datetime.now(UTC)).isoformat(),
            now,
            json.dumps(ev.model_dump(mode="json", exclude_none=True)),
        )
        for ev in parse_jsonl(file)
    ]
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE event (id INTEGER PRIMARY KEY, account_id TEXT NOT NULL, type TEXT NOT NULL,"
        " occurred_at TEXT NOT NULL, received_at TEXT NOT NULL, payload TEXT NOT NULL,"
        " dispatched INTEGER NOT NULL DEFAULT 0)"
    )
    conn.execute("CREATE INDEX ix_event_account_id ON event (account_id)")
    conn.execute("CREATE INDEX ix_event_type ON event (type)")
    conn.commit()
    t0 = time.perf_counter()
    for at in range(0, len(rows), batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO event (account_id, type, occurred_at, received_at, payload)"
            " VALUES (?, ?, ?, ?, ?)",
            rows[at : at + batch],
        )
        conn.commit()
    elapsed = time.perf_counter() - t0
    conn.close()
    return {"events": len(rows), "seconds": round(elapsed, 3), "per_s": round(len(rows) / elapsed)}


# --- the import, in its own process (as the CLI runs) -----------------------------------


async def import_events(
    data_dir: Path, file: Path, temporal: str | None, say: Callable[[dict[str, Any]], None]
) -> None:
    """What `autopilot events import` does; `say` hears progress. With `temporal` (an
    address), each batch's runs are started after it, as the CLI does; without, the
    intents stay in the outbox for the worker's dispatcher."""
    settings = Settings(data_dir=data_dir, database_url="")
    db = make_engine(settings.db_url)
    client = await connect(temporal) if temporal else None
    ingest = Ingest(
        db,
        client,  # type: ignore[arg-type]  # None: storing needs no Temporal
        load_specs(settings.agents_path),
        task_queue=settings.task_queue,
        policy=make_policy_engine(settings),
    )
    t0, cpu0 = time.perf_counter(), time.process_time()
    events = parse_jsonl(file)  # every line validated before anything is stored
    t1 = time.perf_counter()
    if unknown := ingest.unknown_accounts(events):
        raise SystemExit(f"unknown account on line {unknown[0] + 1}")
    say({"total": len(events)})
    t2 = time.perf_counter()
    batches, triggered, started, dispatch_s = [], 0, 0, 0.0
    for at in range(0, len(events), IMPORT_BATCH):
        b0 = time.perf_counter()
        stored = ingest.store(events[at : at + IMPORT_BATCH])
        b1 = time.perf_counter()
        batches.append((b1 - b0) * 1000)
        triggered += sum(1 for s in stored if s.agents)
        if client is not None:
            started += len(await ingest.dispatch(stored))
            dispatch_s += time.perf_counter() - b1
        say({"done": at + len(stored)})
    t3, cpu = time.perf_counter(), time.process_time() - cpu0
    say(
        {
            "result": {
                "events": len(events),
                "batch": IMPORT_BATCH,
                "parse_s": round(t1 - t0, 3),
                "check_s": round(t2 - t1, 3),
                "store_s": round(t3 - t2 - dispatch_s, 3),
                "dispatch_s": round(dispatch_s, 3) if client else None,
                "total_s": round(t3 - t0, 3),
                "per_s": round(len(events) / (t3 - t0)),
                "store_per_s": round(len(events) / (t3 - t2 - dispatch_s)),
                # Per CPU second of this process: what a core of its own would do (the
                # machine may be shared; wall-clock rates then understate it).
                "cpu_s": round(cpu, 3),
                "per_cpu_s": round(len(events) / cpu),
                "triggered": triggered,
                "runs_started": started if client else None,
                "batch_ms": {
                    "p50": round(pct(batches, 0.5), 1),
                    "p99": round(pct(batches, 0.99), 1),
                    "max": round(max(batches), 1),
                },
            }
        }
    )


async def run_import(
    data_dir: Path, file: Path, label: str, temporal: str | None = None
) -> dict[str, Any]:
    """The import in a child process, with a progress bar."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "autopilot.evals.bench.ingest",
        "--import-into",
        str(data_dir),
        "--file",
        str(file),
        *(["--temporal-target", temporal] if temporal else []),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    result: dict[str, Any] = {}
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None)
        async for line in proc.stdout:
            msg = json.loads(line)
            if "total" in msg:
                progress.update(task, total=msg["total"])
            elif "done" in msg:
                progress.update(task, completed=msg["done"])
            else:
                result = msg["result"]
    if await proc.wait() != 0 or not result:
        raise SystemExit(f"the import ({label}) failed")
    return result


# --- the API, in its own process ---------------------------------------------------------


def serve(data_dir: Path, port: int) -> None:
    """The real app (as `autopilot up` builds it) under uvicorn; Temporal is not needed
    for the endpoints measured, so its client connects lazily."""
    settings = Settings(data_dir=data_dir, database_url="")
    services = build_services(settings)
    client = asyncio.run(
        Client.connect(settings.temporal_target, data_converter=pydantic_data_converter, lazy=True)
    )
    ingest = Ingest(
        services.db,
        client,
        services.specs,
        task_queue=settings.task_queue,
        policy=services.policy,
    )
    app = create_app(services, ingest)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")


Request = tuple[str, str, dict[str, Any] | None]  # method, path, JSON body


async def load(
    base: str,
    requests: dict[str, Request],
    headers: dict[str, str],
    rate: float,
    until: Callable[[], bool],
) -> dict[str, Any]:
    """Open loop over `requests` in turn, `rate` a second in all, until `until()`."""
    samples: dict[str, list[float]] = {name: [] for name in requests}
    errors = dict.fromkeys(requests, 0)
    names = list(requests)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60) as http:

        async def send(name: str) -> bool:
            method, path, body = requests[name]
            try:
                return (await http.request(method, path, json=body)).is_success
            except httpx.HTTPError:
                return False

        await asyncio.gather(*(send(name) for name in names for _ in range(4)))  # warm
        start = time.perf_counter() + 0.05
        tasks = []

        async def one(i: int) -> None:
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            name = names[i % len(names)]
            errors[name] += not await send(name)
            samples[name].append((time.perf_counter() - due) * 1000)

        i = 0
        while not until():
            tasks.append(asyncio.create_task(one(i)))
            i += 1
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
    return {
        name: {
            "n": len(s),
            "errors": errors[name],
            "p50_ms": round(pct(s, 0.5), 2),
            "p99_ms": round(pct(s, 0.99), 2),
            "max_ms": round(max(s), 2),
        }
        for name, s in samples.items()
    }


# --- the run -------------------------------------------------------------------------------


def _copy(seeded: Path, to: Path) -> Path:
    shutil.copytree(seeded, to)
    return to


async def bench(
    events: int,
    accounts: int,
    rate: float,
    post_rate: float,
    idle_s: float,
    temporal: bool,
    tmp: Path,
) -> dict[str, Any]:
    seeded = tmp / "seeded"
    print(f"seeding {accounts} accounts …", flush=True)
    db = make_engine(f"sqlite:///{seeded / DB_FILE}")
    seed_portfolio(db, n=accounts)
    with Session(db) as s:
        ids = list(s.exec(select(Account.id).order_by(col(Account.id))).all())
    token = issue_token(db, user_id="maria")  # a manager: every book of the organisation
    with db.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    file = tmp / "events.jsonl"
    file.write_text("".join(json.dumps(e) + "\n" for e in generate(ids, events)))

    out: dict[str, Any] = {"baseline_executemany": baseline(file, tmp / "bare.db", IMPORT_BATCH)}
    solo = _copy(seeded, tmp / "solo")
    out["import"] = await run_import(solo, file, "import (API idle)")
    out["import"]["intents"] = _intents(solo)
    if temporal:
        out["import_with_temporal"] = await _with_temporal(seeded, file, tmp)

    served = _copy(seeded, tmp / "served")
    port = free_port()
    api = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "autopilot.evals.bench.ingest",
        "--serve",
        str(served),
        "--port",
        str(port),
    )
    try:
        deadline = time.monotonic() + 120
        while not port_open(port):
            if api.returncode is not None or time.monotonic() > deadline:
                raise SystemExit("the API did not start")
            await asyncio.sleep(0.2)
        reads: dict[str, Request] = {
            "health": ("GET", "/health", None),
            "approvals": ("GET", "/approvals", None),
            "account": ("GET", f"/accounts/{ids[len(ids) // 2]}", None),
        }
        # A writer beside the import: an event no agent's trigger fires on, so that
        # no run (and no Temporal) is needed; it waits for the import's write lock.
        writes: dict[str, Request] = {
            "post_event": (
                "POST",
                "/events",
                {"account_id": ids[0], "type": "ticket_closed", "priority": "P3"},
            )
        }
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}"

        async def traffic(until: Callable[[], bool]) -> dict[str, Any]:
            if not post_rate:
                return await load(base, reads, headers, rate, until)
            r, w = await asyncio.gather(
                load(base, reads, headers, rate, until),
                load(base, writes, headers, post_rate, until),
            )
            return r | w

        end = time.monotonic() + idle_s
        out["api_idle"] = await traffic(lambda: time.monotonic() > end)
        running = asyncio.create_task(run_import(served, file, "import (API under load)"))
        out["api_under_import"] = await traffic(running.done)
        out["import_under_api_load"] = await running
    finally:
        api.terminate()
        await api.wait()
    out["ratio_store_vs_baseline"] = round(
        out["baseline_executemany"]["per_s"] / out["import"]["store_per_s"], 1
    )
    out["accounts"] = accounts
    return out


async def _with_temporal(seeded: Path, file: Path, tmp: Path) -> dict[str, Any]:
    """The import again, starting each batch's runs as the CLI does (no worker: the runs
    wait on their task queue; what is measured is the start)."""
    data_dir = _copy(seeded, tmp / "with-temporal")
    settings = Settings(data_dir=data_dir, temporal_port=free_port(), temporal_ui_port=free_port())
    server = start_dev_server(settings, ui=False)
    try:
        await connect(settings.temporal_target, attempts=120)
        result = await run_import(
            data_dir, file, "import (runs started)", temporal=settings.temporal_target
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    result["intents"] = _intents(data_dir)
    return result


def _intents(data_dir: Path) -> dict[str, int]:
    db = make_engine(f"sqlite:///{data_dir / DB_FILE}")
    with Session(db) as s:
        stored = s.exec(select(func.count()).select_from(Event)).one()
        intents = s.exec(select(func.count()).select_from(EventDispatch)).one()
        pending = s.exec(
            select(func.count())
            .select_from(EventDispatch)
            .where(col(EventDispatch.dispatched_at).is_(None))
        ).one()
    db.dispose()
    return {"events_stored": stored, "dispatch_intents": intents, "pending": pending}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=20, help="GET requests a second, in all")
    parser.add_argument("--post-rate", type=float, default=2, help="POST /events a second")
    parser.add_argument("--idle-seconds", type=float, default=15)
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file (default: data dir/bench/)"
    )
    parser.add_argument(
        "--temporal",
        action="store_true",
        help="also start each batch's runs on an embedded Temporal dev server, as the CLI does",
    )
    parser.add_argument("--import-into", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--temporal-target", help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.import_into:  # the child that imports
        asyncio.run(
            import_events(
                args.import_into,
                args.file,
                args.temporal_target,
                lambda m: print(json.dumps(m), flush=True),
            )
        )
        return
    if args.serve:  # the child that serves the API
        serve(args.serve, args.port)
        return

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="autopilot-bench-ingest-") as tmp:
        result = asyncio.run(
            bench(
                args.events,
                args.accounts,
                args.rate,
                args.post_rate,
                args.idle_seconds,
                args.temporal,
                Path(tmp),
            )
        )
    result["meta"] = {
        "at": datetime.now(UTC).isoformat(),
        "events": args.events,
        "rate": args.rate,
        "post_rate": args.post_rate,
        "cpus": os.cpu_count(),
        "load_average_1m": {"start": load_start, "end": os.getloadavg()[0]},
    }
    out = (
        args.out or Settings().data_dir / "bench" / f"ingest-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    b, imp, loaded = (
        result["baseline_executemany"],
        result["import"],
        result["import_under_api_load"],
    )
    print(
        f"{'import path (API idle)':<30} {imp['per_s']:>6} events/s ({imp['per_cpu_s']}/CPU-s; "
        f"store {imp['store_per_s']}/s, parse {imp['parse_s']} s); "
        f"batch of {imp['batch']} p50 {imp['batch_ms']['p50']} ms "
        f"p99 {imp['batch_ms']['p99']} ms; {imp['triggered']} triggered, "
        f"{imp['intents']['dispatch_intents']} intents"
    )
    print(
        f"{'import path (API under load)':<30} {loaded['per_s']:>6} events/s "
        f"({loaded['per_cpu_s']}/CPU-s)"
    )
    if t := result.get("import_with_temporal"):
        print(
            f"{'import path + runs started':<30} {t['per_s']:>6} events/s "
            f"({t['runs_started']} runs started in {t['dispatch_s']} s)"
        )
    print(
        f"{'bare executemany (baseline)':<30} {b['per_s']:>6} events/s "
        f"(store path {result['ratio_store_vs_baseline']}× slower)"
    )
    for name in result["api_idle"]:
        idle, busy = result["api_idle"][name], result["api_under_import"][name]
        print(
            f"{name:<14} idle p50 {idle['p50_ms']:7.2f} p99 {idle['p99_ms']:7.2f} ms | "
            f"under import p50 {busy['p50_ms']:7.2f} p99 {busy['p99_ms']:7.2f} "
            f"max {busy['max_ms']:7.1f} ms ({busy['n']} req, {busy['errors']} errors)"
        )
    meta = result["meta"]
    print(f"load average {meta['load_average_1m']} on {meta['cpus']} CPUs; written: {out}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
