"""Inbox under load: `GET /approvals` p50/p99 at a fixed request rate with 10,000
pending items, against a static endpoint (`GET /health`) served by the same process
in the same run; and approve → tool executed against a bare Temporal update with the
same activities after it. The product runs as `autopilot up` in its own process, over
real HTTP on loopback; the load is open-loop (latency counts from each request's
scheduled time, so a stall is not hidden by the client waiting) and comes from a
process of its own (`loadgen`): each phase reports the rate achieved and the CPU per
request of the server and of the client, so a busy machine shows in the figures.
`inbox_cpu` gives the server's CPU per request in process, whatever the load.

    python -m autopilot.evals.bench.inbox --pending 10000 --rate 200 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlmodel import Session, select
from temporalio.worker import Worker

from autopilot.evals.bench.baseline import BareApprovalWorkflow, noop
from autopilot.evals.bench.e2e import (
    AFTER_APPROVAL_ACTIVITIES,
    executed,
    first_pending,
    summary,
)
from autopilot.runtime.auth.users import issue_token
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.devstack.scenarios import drop_events, pick_accounts
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.devstack.stack import free_port, port_open
from autopilot.runtime.devstack.temporal import connect
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.db import make_engine


def add_pending(db: Any, n: int, *, seed: int = 11) -> int:
    """`n` pending items shaped as the agents make them, on the seeded accounts."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with Session(db) as session:
        accounts = session.exec(select(Account.id, Account.segment)).all()
        for i in range(n):
            account_id, segment = rng.choice(accounts)
            offer = rng.random() < 0.4
            discount = rng.choice([5, 8, 10, 12]) if offer else 0
            action = {
                "tool": "send_offer" if offer else "send_email",
                "args": {"to": f"champion@{account_id}.example"},
                "discount_pct": discount,
                "expected_cost": rng.uniform(0.5, 20_000 if offer else 1),
            }
            roles = ["csm", "manager"] if offer else ["csm"]
            created = now - timedelta(minutes=rng.uniform(0, 72 * 60))
            session.add(
                Approval(
                    id=f"apr_bench_{i:06d}",
                    org_id="demo",
                    workflow_id=f"bench:{account_id}:{i}",
                    run_key=f"bench/{i}",
                    agent=rng.choice(["churn_rescue", "renewal", "adoption"]),
                    account_id=account_id,
                    segment=segment,
                    tool=action["tool"],
                    action=action,
                    payload_hash=sha256_hex(action),
                    value=action["expected_cost"],
                    risk=round(rng.random(), 3),
                    roles=roles,
                    deciders={r: [r] for r in roles},
                    reasons=[f"{r}: synthetic load item" for r in roles],
                    decision={},
                    status="pending",
                    created_at=created,
                    due_at=created + timedelta(hours=72),
                )
            )
        session.commit()
    return n


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(
    url: str, headers: dict[str, str], rate: float, seconds: float, server_pid: int
) -> dict[str, Any]:
    """Open-loop load from its own process (`loadgen`), so the client's CPU is not the
    server's; the server's CPU over the same span, per request, beside the client's."""
    cpu0, t0 = cpu_seconds(server_pid), time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "autopilot.evals.bench.loadgen",
        "--url",
        url,
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        env={**os.environ, "LOADGEN_HEADERS": json.dumps(headers)},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the load generator failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out)
    span = time.perf_counter() - t0  # includes the generator's start and connection set-up
    server = cpu_seconds(server_pid) - cpu0
    result["server_cpu_ms_per_req"] = round(server / max(1, result["n"]) * 1000, 3)
    result["server_cpu_pct"] = round(server / span * 100, 1)
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return result


async def bench(
    pending: int, rate: float, seconds: float, approvals: int, data_dir: Path
) -> dict[str, Any]:
    settings = Settings(
        data_dir=data_dir,
        temporal_port=free_port(),
        temporal_ui_port=free_port(),
        smtp_port=free_port(),
        api_port=free_port(),
        database_url="",
        smtp_host="",
    )
    db = make_engine(settings.db_url)
    seed_portfolio(db, n=2000)
    add_pending(db, pending)
    env = {
        **os.environ,
        "AUTOPILOT_DATA_DIR": str(data_dir),
        "AUTOPILOT_TEMPORAL_PORT": str(settings.temporal_port),
        "AUTOPILOT_TEMPORAL_UI_PORT": str(settings.temporal_ui_port),
        "AUTOPILOT_SMTP_PORT": str(settings.smtp_port),
        "AUTOPILOT_API_PORT": str(settings.api_port),
    }
    log = (data_dir / "up.log").open("wb")
    up = subprocess.Popen(  # noqa: ASYNC220 - started once, before the load begins
        [sys.executable, "-m", "autopilot.runtime.cli.main", "up"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{settings.api_port}"
    out: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 120
        while not port_open(settings.api_port):
            if up.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"`autopilot up` did not start: {(data_dir / 'up.log').read_text()[-2000:]}"
                )
            await asyncio.sleep(0.2)
        manager = {"Authorization": f"Bearer {issue_token(db, user_id='maria')}"}
        csm = {"Authorization": f"Bearer {issue_token(db, user_id='alice')}"}
        async with httpx.AsyncClient(headers=manager) as http:  # warm the paths once
            for _ in range(20):
                (await http.get(f"{base}/approvals")).raise_for_status()
                (await http.get(f"{base}/health")).raise_for_status()
        idle0 = cpu_seconds(up.pid)
        await asyncio.sleep(2)  # the server's own background work, with no requests
        out["server_idle_cpu_pct"] = round((cpu_seconds(up.pid) - idle0) / 2 * 100, 1)
        for name, path, who in (
            ("health_static", "/health", manager),
            ("list_manager", "/approvals", manager),
            ("list_csm_book", "/approvals", csm),
            ("list_page_200", "/approvals?limit=200", manager),
        ):
            out[name] = await load(f"{base}{path}", who, rate, seconds, up.pid)
        for name in ("list_manager", "list_csm_book", "list_page_200"):
            out[name]["ratio_p99_vs_static"] = round(
                out[name]["p99_ms"] / out["health_static"]["p99_ms"], 2
            )
        if approvals:
            out["approve_to_executed"] = await _approvals(settings, db, base, approvals)
    except BaseException:
        print((data_dir / "up.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        up.terminate()
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a stack stuck in shutdown must not hide the error
            up.kill()
            up.wait()
        db.dispose()
    out["pending_items"] = pending
    return out


async def _approvals(settings: Settings, db: Any, base: str, n: int) -> dict[str, Any]:
    """Approve through the API until the tool has executed, and the bare equivalent."""
    client = await connect(settings.temporal_target)
    queue = f"bench-bare-{uuid.uuid4().hex[:6]}"
    accounts = pick_accounts(
        db, "enterprise", n=n + 2, min_arr=250_000, max_arr=1_000_000, strict=False
    )
    agent: list[float] = []
    bare: list[float] = []
    async with (
        Worker(client, task_queue=queue, workflows=[BareApprovalWorkflow], activities=[noop]),
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        for i, account in enumerate(accounts):
            with Session(db) as s:
                owner = s.get(Account, account).owner_csm  # type: ignore[union-attr]
            headers = {"Authorization": f"Bearer {issue_token(db, user_id=owner)}"}
            for ev in drop_events(db, account):
                (await http.post("/events", json=ev, headers=headers)).raise_for_status()
            item = await first_pending(http, account, headers)
            t0 = time.perf_counter()
            body = {"verdict": "approve", "payload_hash": item["payload_hash"]}
            (
                await http.post(f"/approvals/{item['id']}/decision", json=body, headers=headers)
            ).raise_for_status()
            await executed(db, f"agent:churn_rescue:{account}")
            agent.append((time.perf_counter() - t0) * 1000)
            handle = await client.start_workflow(
                BareApprovalWorkflow.run,
                AFTER_APPROVAL_ACTIVITIES,
                id=f"bare-appr-{i}-{uuid.uuid4().hex[:6]}",
                task_queue=queue,
            )
            await asyncio.sleep(0.02)
            t0 = time.perf_counter()
            await handle.execute_update("decide", "approve")
            await handle.result()
            bare.append((time.perf_counter() - t0) * 1000)
    part: dict[str, Any] = {"agent": summary(agent[2:]), "bare_temporal": summary(bare[2:])}
    part["ratio_p95"] = round(part["agent"]["p95_ms"] / part["bare_temporal"]["p95_ms"], 2)
    return part


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--approvals", type=int, default=30, help="0: the list only")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file (default: data dir/bench/)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autopilot-bench-inbox-") as tmp:
        result = asyncio.run(
            bench(args.pending, args.rate, args.seconds, args.approvals, Path(tmp))
        )
    result["meta"] = {
        "at": datetime.now(UTC).isoformat(),
        "rate": args.rate,
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
    }
    out = (
        args.out or Settings().data_dir / "bench" / f"inbox-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"{result['pending_items']} pending items; server idle CPU {result['server_idle_cpu_pct']}%"
    )
    for name, label in (
        ("health_static", "GET /health (static)"),
        ("list_manager", "GET /approvals (manager)"),
        ("list_csm_book", "GET /approvals (CSM book)"),
        ("list_page_200", "GET /approvals?limit=200"),
    ):
        r = result[name]
        print(
            f"{label:<26} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
            f"{r['achieved_rate']:6.1f}/{r['rate']:.0f} req/s  {r['errors']} errors  "
            f"CPU/req server {r['server_cpu_ms_per_req']:.2f} ms, client "
            f"{r['client_cpu_ms_per_req']:.2f} ms  (load {r['loadavg_1m']})"
        )
    if a := result.get("approve_to_executed"):
        print(
            f"{'approve → executed':<26} p50 {a['agent']['p50_ms']:7.1f} ms  "
            f"p95 {a['agent']['p95_ms']:7.1f} ms | bare Temporal p95 "
            f"{a['bare_temporal']['p95_ms']:6.1f} ms | ratio p95 {a['ratio_p95']:.2f}×"
        )
    print(f"{result['pending_items']} pending items; written: {out}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
