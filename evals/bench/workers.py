"""Scale-out: throughput of auto-allowed agent runs with 1 and then 2 worker processes on
one task queue against the same embedded Temporal dev server and the same store, in the
same run (the 1-worker figure is the 2-worker figure's baseline). Each phase has its own
task queue and its own accounts; the events are stored first, then the clock runs from
starting the runs until every run's first action has executed (then a run waits for
its playbook's follow-up, days later).

    python -m autopilot.evals.bench.workers --runs 120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autopilot.evals.bench.e2e import executed
from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.agents.specs import load_specs
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.devstack.scenarios import drop_events, pick_accounts
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.devstack.smtp_sink import start_smtp_sink
from autopilot.runtime.devstack.stack import free_port
from autopilot.runtime.devstack.temporal import connect, start_dev_server
from autopilot.runtime.services import build_services, make_policy_engine
from autopilot.runtime.store.db import make_engine
from autopilot.runtime.worker import build_worker

WARMUP = 2  # runs per worker process before the clock starts: imports, caches, polling


async def serve_worker(queue: str) -> None:
    """The child: one worker process as `autopilot worker` builds it (settings from env)."""
    settings = Settings()
    client = await connect(settings.temporal_target, attempts=120)
    services = build_services(settings)
    await build_worker(client, services, queue).run()


async def runs(ingest: Ingest, accounts: list[str], events: dict[str, list[EventIn]]) -> float:
    """Store the accounts' events, then start their runs and wait for all: the seconds
    from the first start to the last run's end."""
    stored = [s for a in accounts for s in ingest.store(events[a])]
    t0 = time.perf_counter()
    started = await ingest.dispatch(stored)
    if len(started) < len(accounts):
        raise SystemExit(f"only {len(started)} of {len(accounts)} runs started")
    # A run's first action executed (and recorded): the run then waits, durably, for its
    # playbook's follow-up days later; that wait is not work.
    await asyncio.gather(*(executed(ingest.db, s.workflow_id) for s in started))
    return time.perf_counter() - t0


async def phase(
    k: int,
    env: dict[str, str],
    ingest: Ingest,
    accounts: list[str],
    events: dict[str, list[EventIn]],
) -> dict[str, Any]:
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - started once, before the clock runs
            [sys.executable, "-m", "autopilot.evals.bench.workers", "--worker", ingest.task_queue],
            env=env,
        )
        for _ in range(k)
    ]
    try:
        warm, timed = accounts[: WARMUP * k], accounts[WARMUP * k :]
        await runs(ingest, warm, events)
        seconds = await runs(ingest, timed, events)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return {
        "workers": k,
        "runs": len(timed),
        "seconds": round(seconds, 3),
        "runs_per_s": round(len(timed) / seconds, 3),
    }


async def bench(n: int, data_dir: Path) -> dict[str, Any]:
    settings = Settings(
        data_dir=data_dir,
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        database_url="",
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
    )
    db = make_engine(settings.db_url)
    need = 2 * n + WARMUP * 3
    seed_portfolio(db, n=max(1200, need * 6))
    small = [
        a
        for seg in ("smb", "tech_touch")
        for a in pick_accounts(db, seg, n=need, max_arr=50_000, strict=False)
    ][:need]
    if len(small) < need:
        # Fewer accounts qualify at some hours (their contacts' quiet hours): fewer runs.
        n = (len(small) - WARMUP * 3) // 2
        if n < 10:
            raise SystemExit(f"portfolio too small: {len(small)} of {need} small accounts")
        print(f"only {len(small)} small accounts in business hours: {n} runs per phase")
        small = small[: 2 * n + WARMUP * 3]
    events = {a: [EventIn.model_validate(e) for e in drop_events(db, a)] for a in small}
    env = {
        **os.environ,
        "AUTOPILOT_DATA_DIR": str(data_dir),
        "AUTOPILOT_TEMPORAL_PORT": str(settings.temporal_port),
        "AUTOPILOT_SMTP_HOST": settings.smtp_host,
        "AUTOPILOT_SMTP_PORT": str(settings.smtp_port),
        "AUTOPILOT_DATABASE_URL": "",
        "DATABASE_URL": "",
        "TEMPORAL_ADDRESS": "",
    }
    sink = start_smtp_sink(db, port=settings.smtp_port)  # the runs' emails land here
    server = start_dev_server(settings, ui=False)
    try:
        client = await connect(settings.temporal_target, attempts=120)
        specs, policy = load_specs(settings.agents_path), make_policy_engine(settings)
        out: dict[str, Any] = {}
        first = small[: n + WARMUP]
        rest = small[n + WARMUP :]
        for k, accounts in ((1, first), (2, rest)):
            queue = f"bench-w{k}-{uuid.uuid4().hex[:6]}"
            ingest = Ingest(db, client, specs, task_queue=queue, policy=policy)
            out[f"workers_{k}"] = await phase(k, env, ingest, accounts, events)
    finally:
        server.terminate()
        server.wait(timeout=30)
        sink.stop()
        db.dispose()
    out["ratio_2_vs_1"] = round(out["workers_2"]["runs_per_s"] / out["workers_1"]["runs_per_s"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=120, help="timed runs per phase")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", metavar="QUEUE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # the child: a worker until SIGTERM
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        asyncio.run(serve_worker(args.worker))
        return
    with tempfile.TemporaryDirectory(prefix="autopilot-bench-workers-") as tmp:
        result = asyncio.run(bench(args.runs, Path(tmp)))
    result["meta"] = {"at": datetime.now(UTC).isoformat(), "cpus": os.cpu_count()}
    out = (
        args.out
        or Settings().data_dir / "bench" / f"workers-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    one, two = result["workers_1"], result["workers_2"]
    print(
        f"1 worker: {one['runs_per_s']:.2f} runs/s | 2 workers: {two['runs_per_s']:.2f} runs/s "
        f"| ratio {result['ratio_2_vs_1']}× ({two['runs']} runs each, {os.cpu_count()} CPUs)"
    )
    print(f"written: {out}")
    sys.stdout.flush()
    os._exit(0)  # a live Temporal client can abort at interpreter exit


if __name__ == "__main__":
    main()
