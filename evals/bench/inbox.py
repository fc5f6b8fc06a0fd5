"""Inbox under load: `GET /approvals` p50/p99 at a fixed request rate with 10,000
pending items, against a static endpoint (`GET /health`) served by the same process
in the same run; and approve → tool executed against a bare Temporal update with the
same activities after it. The product runs as `autopilot up` in its own process, over
real HTTP on loopback; the load is open-loop (latency counts from each request's
scheduled time, so a stall is not hidden by the client waiting).

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
    pct,
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


async def load(url: str, headers: dict[str, str], rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: request i is due at start + i/rate; its latency counts from then."""
    total = int(rate * seconds)
    samples: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as http:
        # Open the connections first, so the measured part is the server, not TCP set-up.
        await asyncio.gather(*(http.get(url) for _ in range(32)))
        start = time.perf_counter() + 0.1

        async def one(i: int) -> None:
            nonlocal errors
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            try:
                ok = (await http.get(url)).status_code == 200
            except httpx.HTTPError:
                ok = False
            errors += not ok
            samples.append((time.perf_counter() - due) * 1000)

        await asyncio.gather(*(one(i) for i in range(total)))
    return {
        "n": len(samples),
        "errors": errors,
        "rate": rate,
        "p50_ms": round(pct(samples, 0.5), 2),
        "p99_ms": round(pct(samples, 0.99), 2),
        "max_ms": round(max(samples), 2),
    }


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
        out["health_static"] = await load(f"{base}/health", manager, rate, seconds)
        out["list_manager"] = await load(f"{base}/approvals", manager, rate, seconds)
        out["list_csm_book"] = await load(f"{base}/approvals", csm, rate, seconds)
        out["list_page_200"] = await load(f"{base}/approvals?limit=200", manager, rate, seconds)
        for name in ("list_manager", "list_csm_book", "list_page_200"):
            out[name]["ratio_p99_vs_static"] = round(
                out[name]["p99_ms"] / out["health_static"]["p99_ms"], 2
            )
        out["approve_to_executed"] = await _approvals(settings, db, base, approvals)
    except BaseException:
        print((data_dir / "up.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        up.terminate()
        up.wait(timeout=30)
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
    parser.add_argument("--approvals", type=int, default=30)
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
    base = result["health_static"]
    print(
        f"{'GET /health (static)':<28} p50 {base['p50_ms']:7.2f} ms  p99 {base['p99_ms']:7.2f} ms  "
        f"({base['n']} req at {base['rate']:.0f}/s, {base['errors']} errors)"
    )
    for name, label in (
        ("list_manager", "GET /approvals (manager)"),
        ("list_csm_book", "GET /approvals (CSM book)"),
        ("list_page_200", "GET /approvals?limit=200"),
    ):
        r = result[name]
        print(
            f"{label:<28} p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
            f"p99 ratio vs static {r['ratio_p99_vs_static']:.2f}×  ({r['errors']} errors)"
        )
    a = result["approve_to_executed"]
    print(
        f"{'approve → executed':<28} p50 {a['agent']['p50_ms']:7.1f} ms  p95 {a['agent']['p95_ms']:7.1f} ms | bare "
        f"Temporal p95 {a['bare_temporal']['p95_ms']:6.1f} ms | ratio p95 {a['ratio_p95']:.2f}×"
    )
    print(f"{result['pending_items']} pending items; written: {out}")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
