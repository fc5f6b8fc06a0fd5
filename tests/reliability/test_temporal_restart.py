"""Temporal killed (-9) and restarted on its own database, again and again, while events
arrive: events posted while it is down are kept and dispatched once it is back (the
outbox), runs resume from their histories, and every email arrives exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from sqlmodel import Session, col, select

from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.devstack.scenarios import drop_events, pick_accounts
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.devstack.temporal import connect, start_dev_server
from autopilot.runtime.services import build_services
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.events import EventDispatch
from autopilot.runtime.store.tool_calls import ToolCallRecord
from tests.conftest import NOW, REPO, free_port, make_settings
from tests.reliability.faults import FaultySmtp

FINAL = ("executed", "unknown", "failed", "denied")


async def test_temporal_restarted_again_and_again_loses_and_doubles_nothing(tmp_path: Path) -> None:
    port = free_port()
    settings = make_settings(tmp_path, temporal_port=port, temporal_ui_port=free_port(),
                             temporal_address=f"127.0.0.1:{port}")
    server = FaultySmtp(port=settings.smtp_port).start()
    services = build_services(settings, clock=lambda: NOW)
    seed_portfolio(services.db, n=240, today=NOW.date())
    picked = pick_accounts(services.db, "smb", n=6, max_arr=50_000, at=NOW, strict=False)
    assert len(picked) >= 4
    temporal = start_dev_server(settings, ui=False)
    env = {**os.environ, "PYTHONPATH": str(REPO), "AUTOPILOT_DATA_DIR": str(tmp_path),
           "AUTOPILOT_DATABASE_URL": settings.database_url, "AUTOPILOT_TASK_QUEUE": f"tr-{uuid.uuid4().hex[:8]}",
           "TEMPORAL_ADDRESS": settings.temporal_address, "AUTOPILOT_SMTP_HOST": "127.0.0.1",
           "AUTOPILOT_SMTP_PORT": str(server.port), "AUTOPILOT_SEND_MAX_BACKOFF_S": "1"}
    log = (tmp_path / "worker.log").open("ab")
    worker = subprocess.Popen([sys.executable, "-m", "tests.reliability.worker_proc"], cwd=REPO, env=env,
                              stdout=log, stderr=log)
    restarts = 0
    accepted_while_down = 0
    try:
        client = await connect(settings.temporal_target, attempts=200)
        ingest = Ingest(services.db, client, services.specs, task_queue=env["AUTOPILOT_TASK_QUEUE"],
                        policy=services.policy)
        for i, account in enumerate(picked):
            events = [EventIn.model_validate(e) for e in drop_events(services.db, account)]
            if i % 2:  # every other account's events arrive while Temporal is down
                temporal.kill()
                temporal.wait()
                restarts += 1
                stored = await asyncio.to_thread(ingest.store, events)  # what POST /events does first
                accepted_while_down += 1
                assert stored
                await asyncio.sleep(1.0)
                temporal = start_dev_server(settings, ui=False)
            else:
                await ingest.ingest(events)
                await asyncio.sleep(2.0)  # let its run get under way, then pull the plug mid-run
                temporal.kill()
                temporal.wait()
                restarts += 1
                temporal = start_dev_server(settings, ui=False)

        def rows() -> list[ActionRecord]:
            with Session(services.db) as s:
                return list(s.exec(select(ActionRecord).where(col(ActionRecord.account_id).in_(picked))))

        loop = asyncio.get_running_loop()
        end = loop.time() + 240
        while not (len({r.account_id for r in rows()}) == len(picked) and all(r.status in FINAL for r in rows())):
            assert loop.time() < end, Counter(r.status for r in rows())
            await asyncio.sleep(0.5)
        with Session(services.db) as s:
            pending = s.exec(select(EventDispatch).where(col(EventDispatch.dispatched_at).is_(None))).all()
            calls = {c.idempotency_key: c for c in s.exec(select(ToolCallRecord))}
    finally:
        worker.kill()
        worker.wait()
        temporal.kill()
        temporal.wait()
        server.stop()
        services.db.dispose()
    final = rows()
    by_id = Counter(server.message_ids())
    executed = [r for r in final if r.status == "executed"]
    report = {"accounts": len(picked), "restarts": restarts, "accepted_while_down": accepted_while_down,
              "actions": dict(Counter(r.status for r in final)), "emails_expected": len(executed),
              "emails_received": sum(by_id.values()),
              "duplicated": sum(n - 1 for n in by_id.values() if n > 1)}
    if path := os.environ.get("AUTOPILOT_FAULTS_REPORT"):
        with open(path, "a") as f:
            f.write(json.dumps({"test": "temporal_restart", **report}) + "\n")
    print(report)
    assert pending == []  # every accepted event was dispatched
    assert report["duplicated"] == 0
    assert all(by_id[calls[r.run_key].output["message_id"]] == 1 for r in executed)  # none lost
    assert len(executed) == len(picked)
