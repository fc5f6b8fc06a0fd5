"""The daily sweep: every active account evaluated for the scheduled agents (their CEL
trigger and audience), the due ones stored with their dispatch intents and their runs
started on an embedded Temporal dev server (no worker: what is measured is the start, as
the sweep activity does it). Baseline in the same run: the same scheduled triggers
evaluated by bare `cel` on the same accounts (converted beforehand), plus as many bare
Temporal starts of a trivial workflow, as many in flight at once as the sweep's dispatch.
The report counts the runs each agent started: most of an agent's cost is its starts, so
an agent due on every account (Compliance was, before its trigger asked for work to do)
is the sweep's cost.

    python -m autopilot.evals.bench.sweep --accounts 10000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import cel
from sqlmodel import Session, col, select
from temporalio.client import Client

from autopilot.evals.bench.baseline import BareWorkflow
from autopilot.runtime.accounts.ingest import DISPATCH_CONCURRENCY, Ingest
from autopilot.runtime.accounts.sweep_due import snapshots
from autopilot.runtime.agents.playbook import account_cel
from autopilot.runtime.agents.specs import load_specs
from autopilot.runtime.agents.triggers import SCHEDULE_EVENT
from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.devstack.stack import free_port
from autopilot.runtime.devstack.temporal import connect, start_dev_server
from autopilot.runtime.services import make_policy_engine
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.db import make_engine


def bare_cel(db: Any, programs: list[Any], today: date) -> tuple[float, int]:
    """The scheduled triggers over every active account's CEL values (built untimed)."""
    with Session(db) as s:
        ids = list(s.exec(select(Account.id).where(Account.status == "active")).all())
        # The snapshots `get_snapshot` gives, read in bulk (tests/runtime/accounts/
        # test_sweep_due.py holds them equal): 10,000 one by one take minutes.
        values = [account_cel(snapshot, today) for _, snapshot in snapshots(s, ids, today)]
    fired = 0
    t0 = time.perf_counter()
    for v in values:
        ctx = cel.Context({"account": v, "event": {"type": SCHEDULE_EVENT}})
        for program in programs:
            # As the product: a trigger that cannot be evaluated does not fire.
            with contextlib.suppress(Exception):
                fired += program.execute(ctx) is True
    return time.perf_counter() - t0, fired


async def bare_starts(client: Client, n: int, queue: str) -> float:
    gate = asyncio.Semaphore(DISPATCH_CONCURRENCY)
    tag = uuid.uuid4().hex[:6]

    async def one(i: int) -> None:
        async with gate:
            await client.start_workflow(
                BareWorkflow.run, 5, id=f"bare-sweep-{tag}-{i}", task_queue=queue
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0


async def bench(accounts: int, data_dir: Path) -> dict[str, Any]:
    settings = Settings(
        data_dir=data_dir,
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        database_url="",
    )
    db = make_engine(settings.db_url)
    t0 = time.perf_counter()
    seed_portfolio(db, n=accounts)
    seeded = time.perf_counter() - t0
    with Session(db) as s:
        active = len(s.exec(select(col(Account.id)).where(Account.status == "active")).all())
    server = start_dev_server(settings, ui=False)
    try:
        client = await connect(settings.temporal_target, attempts=120)
        specs = load_specs(settings.agents_path)
        queue = f"bench-sweep-{uuid.uuid4().hex[:6]}"
        ingest = Ingest(db, client, specs, task_queue=queue, policy=make_policy_engine(settings))
        today = date.today()
        t0 = time.perf_counter()
        stored = await ingest.sweep(today)
        sweep_s = time.perf_counter() - t0
        started = sum(len(s.agents) for s in stored)
        by_agent = Counter(agent for s in stored for agent in s.agents)
        programs = [
            cel.compile(spec.trigger)
            for spec in specs.values()
            if spec.schedule is not None and spec.trigger
        ]
        cel_s, fired = bare_cel(db, programs, today)
        starts_s = await bare_starts(client, started, queue + "-bare")
    finally:
        server.terminate()
        server.wait(timeout=30)
        db.dispose()
    return {
        "accounts": accounts,
        "active": active,
        "seed_s": round(seeded, 2),
        "sweep_s": round(sweep_s, 3),
        "started": started,
        "started_by_agent": dict(sorted(by_agent.items())),  # Compliance: only accounts with work
        "accounts_due": len(stored),
        "baseline": {
            "seconds": round(cel_s + starts_s, 3),
            "cel_s": round(cel_s, 3),
            "cel_fired": fired,
            "starts_s": round(starts_s, 3),
            "starts": started,
        },
        "ratio_vs_baseline": round(sweep_s / max(1e-9, cel_s + starts_s), 2),
        "target_s": 60,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autopilot-bench-sweep-") as tmp:
        result = asyncio.run(bench(args.accounts, Path(tmp)))
    result["meta"] = {"at": datetime.now(UTC).isoformat(), "cpus": os.cpu_count()}
    out = (
        args.out or Settings().data_dir / "bench" / f"sweep-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    b = result["baseline"]
    print(
        f"sweep of {result['accounts']} accounts: {result['sweep_s']:.2f} s, "
        f"{result['started']} runs started on {result['accounts_due']} accounts "
        f"{result['started_by_agent']} (target < 60 s per 10,000) | bare CEL {b['cel_s']:.2f} s"
        f" + bare starts {b['starts_s']:.2f} s | ratio {result['ratio_vs_baseline']}×"
    )
    print(f"written: {out}")
    sys.stdout.flush()
    os._exit(0)  # a live Temporal client can abort at interpreter exit


if __name__ == "__main__":
    main()
