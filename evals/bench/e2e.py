"""End-to-end latency: event → auto-allowed action executed, and approve → executed,
against bare Temporal workflows with the same number of activities, in the same run
on the same embedded server. Prints ratios and writes JSON to the data directory.

    python -m autopilot.evals.bench.e2e --runs 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from temporalio.worker import Worker

from autopilot.evals.bench.baseline import BareApprovalWorkflow, BareWorkflow, noop
from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.api.app import create_app
from autopilot.runtime.auth.users import issue_token
from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.scenarios import drop_events, pick_accounts
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.devstack.smtp_sink import start_smtp_sink
from autopilot.runtime.devstack.stack import free_port
from autopilot.runtime.devstack.temporal import connect, start_dev_server
from autopilot.runtime.services import build_services
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.worker import build_worker

AUTO_ACTIVITIES = 5  # observe, plan, gate, execute, record
AFTER_APPROVAL_ACTIVITIES = 2  # execute, record


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50_ms": round(pct(samples, 0.5), 2),
        "p95_ms": round(pct(samples, 0.95), 2),
        "mean_ms": round(statistics.fmean(samples), 2),
    }


async def bench(runs: int, approvals: int, data_dir: Path) -> dict[str, Any]:
    settings = Settings(
        data_dir=data_dir,
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        smtp_host="127.0.0.1",
        smtp_port=free_port(),
        database_url="",
    )
    server = start_dev_server(settings, ui=False)
    try:
        client = await connect(settings.temporal_target, attempts=120)
        services = build_services(settings)
        seed_portfolio(services.db, n=max(1200, runs * 5))
        sink = start_smtp_sink(services.db, port=settings.smtp_port)
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        worker = build_worker(client, services, queue)
        bare = Worker(
            client,
            task_queue=queue + "-bare",
            workflows=[BareWorkflow, BareApprovalWorkflow],
            activities=[noop],
        )
        ingest = Ingest(
            services.db,
            client,
            services.specs,
            task_queue=queue,
            policy=services.policy,
        )
        app = create_app(services, ingest)
        admin = {"Authorization": f"Bearer {issue_token(services.db, user_id='adam')}"}
        maria = {"Authorization": f"Bearer {issue_token(services.db, user_id='maria')}"}
        warmup = 3
        small = [
            a
            for seg in ("smb", "tech_touch")
            for a in pick_accounts(services.db, seg, n=runs + warmup, max_arr=50_000, strict=False)
        ]
        large = pick_accounts(
            services.db,
            "enterprise",
            n=approvals + warmup,
            min_arr=250_000,
            max_arr=1_000_000,
            strict=False,
        )
        if len(small) < runs + warmup or len(large) < approvals + warmup:
            raise SystemExit(
                f"portfolio too small: {len(small)} small, {len(large)} large accounts"
            )
        out: dict[str, Any] = {}
        async with (
            worker,
            bare,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://bench", headers=admin
            ) as http,
        ):
            # The first `warmup` runs of each kind pay for imports and caches: not counted.
            agent_auto: list[float] = []
            base_auto: list[float] = []
            for i, account in enumerate(small[: runs + warmup]):
                events = drop_events(services.db, account)
                for ev in events[:-1]:
                    (await http.post("/events", json=ev)).raise_for_status()
                t0 = time.perf_counter()
                r = await http.post("/events", json=events[-1])
                (wf_id,) = r.json()["started"]
                # Its action executed and recorded: the run then waits (durably) for the
                # playbook's follow-up days later, which is not the latency measured.
                await executed(services.db, wf_id)
                agent_auto.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await client.execute_workflow(
                    BareWorkflow.run,
                    AUTO_ACTIVITIES,
                    id=f"bare-{i}-{uuid.uuid4().hex[:6]}",
                    task_queue=queue + "-bare",
                )
                base_auto.append((time.perf_counter() - t0) * 1000)
            out["event_to_executed"] = {
                "agent": summary(agent_auto[warmup:]),
                "bare_temporal": summary(base_auto[warmup:]),
            }

            agent_appr: list[float] = []
            base_appr: list[float] = []
            for i, account in enumerate(large[: approvals + warmup]):
                for ev in drop_events(services.db, account):
                    (await http.post("/events", json=ev)).raise_for_status()
                item = await first_pending(http, account, maria)
                t0 = time.perf_counter()
                body = {"verdict": "approve", "payload_hash": item["payload_hash"]}
                (
                    await http.post(f"/approvals/{item['id']}/decision", json=body, headers=maria)
                ).raise_for_status()
                await executed(services.db, f"agent:churn_rescue:{account}")
                agent_appr.append((time.perf_counter() - t0) * 1000)
                handle = await client.start_workflow(
                    BareApprovalWorkflow.run,
                    AFTER_APPROVAL_ACTIVITIES,
                    id=f"bare-appr-{i}-{uuid.uuid4().hex[:6]}",
                    task_queue=queue + "-bare",
                )
                await asyncio.sleep(0.02)  # let it reach its wait, as the agent run had
                t0 = time.perf_counter()
                await handle.execute_update("decide", "approve")
                await handle.result()
                base_appr.append((time.perf_counter() - t0) * 1000)
            out["approve_to_executed"] = {
                "agent": summary(agent_appr[warmup:]),
                "bare_temporal": summary(base_appr[warmup:]),
            }
        sink.stop()
    finally:
        server.terminate()
        server.wait(timeout=10)
    for name, part in out.items():  # noqa: PERF102 - both are used below
        part["ratio_p50"] = round(part["agent"]["p50_ms"] / part["bare_temporal"]["p50_ms"], 2)
        part["ratio_p95"] = round(part["agent"]["p95_ms"] / part["bare_temporal"]["p95_ms"], 2)
    return out


async def first_pending(
    http: httpx.AsyncClient, account: str, headers: dict[str, str]
) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = await http.get("/approvals", params={"account_id": account}, headers=headers)
        items = [
            a
            for a in r.raise_for_status().json()
            if a["workflow_id"] == f"agent:churn_rescue:{account}"
        ]
        if items:
            return items[0]
        await asyncio.sleep(0.005)
    raise TimeoutError(f"no pending approval for {account} within 60 s")


# One indexed row read, not an ORM session per poll: the poll shares the event loop (and
# the GIL) with the worker whose latency it measures, and must not slow it down.
_EXECUTED = (
    sa.select(sa.literal(1))
    .where(sa.column("workflow_id") == sa.bindparam("wf"), sa.column("status") == "executed")
    .select_from(sa.table(str(ActionRecord.__tablename__)))
    .limit(1)
)


async def executed(db: Any, workflow_id: str) -> None:
    """Until the approved action is executed *and* recorded (the record step sets the status)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # A connection per look, none held across the wait: many waiters must not drain
        # the pool that the SMTP sink (which stores the runs' emails) draws from too.
        with db.connect() as conn:
            if conn.execute(_EXECUTED, {"wf": workflow_id}).first() is not None:
                return
        await asyncio.sleep(0.002)
    raise TimeoutError(f"{workflow_id}: the approved action did not execute within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--approvals", type=int, default=50)
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file (default: data dir/bench/)"
    )
    args = parser.parse_args()
    base = Settings()
    with tempfile.TemporaryDirectory(prefix="autopilot-bench-") as tmp:
        result = asyncio.run(bench(args.runs, args.approvals, Path(tmp)))
    result["meta"] = {
        "at": datetime.now(UTC).isoformat(),
        "runs": args.runs,
        "approvals": args.approvals,
        "cpus": os.cpu_count(),
    }
    out = args.out or base.data_dir / "bench" / f"e2e-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    for name in ("event_to_executed", "approve_to_executed"):
        part = result[name]
        a, b = part["agent"], part["bare_temporal"]
        print(
            f"{name:<20} agent p50 {a['p50_ms']:7.1f} ms  p95 {a['p95_ms']:7.1f} ms | "
            f"bare Temporal p50 {b['p50_ms']:6.1f} ms  p95 {b['p95_ms']:6.1f} ms | "
            f"ratio p50 {part['ratio_p50']:.2f}×  p95 {part['ratio_p95']:.2f}×  (n={a['n']})"
        )
    print(f"written: {out}")
    os._exit(0)


if __name__ == "__main__":
    main()
