"""The `autopilot` command, run as a process the way a user runs it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from sqlmodel import Session, select

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.store.events import Event
from tests.conftest import Stack, wait_for

AUTOPILOT = str(Path(sys.executable).parent / "autopilot")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AUTOPILOT, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


async def arun_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a process, without blocking this loop (the test's worker runs on it)."""
    proc = await asyncio.create_subprocess_exec(AUTOPILOT, *args, env={**os.environ, **(env or {})},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def stack_env(stack: Stack) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": stack.client.service_client.config.target_host,
        "DATABASE_URL": stack.settings.db_url,
        "AUTOPILOT_TASK_QUEUE": stack.task_queue,
        "AUTOPILOT_DATA_DIR": str(stack.settings.data_dir),
    }


async def test_import_with_a_bad_line_names_it_and_imports_nothing(stack: Stack, tmp_path: Path) -> None:
    account, = stack.pick("smb", max_arr=50_000)
    lines = [json.dumps(e) for e in drop_events(stack.db, account)]
    lines.insert(2, json.dumps({"account_id": account, "type": "nps", "score": "ten"}))
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    proc = await arun_cli("events", "import", str(path), "--json", env=stack_env(stack))
    assert proc.returncode == 2
    out = json.loads(proc.stdout)
    assert out["ok"] is False and f"{path}:3: score:" in out["error"]
    with Session(stack.db) as s:
        assert s.exec(select(Event)).all() == []


async def test_import_with_an_unknown_account_imports_nothing(stack: Stack, tmp_path: Path) -> None:
    account, = stack.pick("smb", max_arr=50_000)
    lines = [json.dumps(e) for e in drop_events(stack.db, account)] + [json.dumps({"account_id": "nope", "type": "login"})]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines))
    proc = await arun_cli("events", "import", str(path), "--json", env=stack_env(stack))
    assert proc.returncode == 2 and f"{path}:{len(lines)}: account_id:" in json.loads(proc.stdout)["error"]
    with Session(stack.db) as s:
        assert s.exec(select(Event)).all() == []


async def test_import_and_cli_approval_drive_a_run(stack: Stack, tmp_path: Path) -> None:
    account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    path = tmp_path / "events.jsonl"
    events = drop_events(stack.db, account)
    path.write_text("\n".join(json.dumps(e) for e in events))
    env = stack_env(stack)
    proc = await arun_cli("events", "import", str(path), "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"ok": True, "imported": len(events), "again": 0, "started": [f"agent:churn_rescue:{account}"]}
    email, = await stack.pending_for(account)
    owner = stack.owner(account)
    listed = json.loads((await arun_cli("approvals", "list", "--as", owner, "--json", env=env)).stdout)
    assert [(a["id"], a["can_decide_as"]) for a in listed["approvals"]] == [(email["id"], "csm")]
    other_csm = next(u for u in ("alice", "bob", "chen", "dana", "emeka") if u != owner)
    mine = json.loads((await arun_cli("approvals", "list", "--as", other_csm, "--json", env=env)).stdout)
    assert all(a["account_id"] != account for a in mine["approvals"])  # not in their book
    proc = await arun_cli("approvals", "approve", email["id"], "--as", owner, "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["status"] == "approved"
    await wait_for(lambda: len(stack.mails()) == 1, what="the approved email")
    offer, = await stack.pending_for(account)
    proc = await arun_cli("approvals", "reject", offer["id"], "--as", "maria", "--reason", "not now", "--json",
                          env=env)
    assert json.loads(proc.stdout)["status"] == "rejected"
    again = await arun_cli("approvals", "approve", offer["id"], "--as", owner, "--json", env=env)
    assert again.returncode == 2 and "Conflict" in json.loads(again.stdout)["error"]


def test_demo_json_reports_every_kind_of_outcome(tmp_path: Path) -> None:
    env = {"AUTOPILOT_DATA_DIR": str(tmp_path)}
    for key in ("TEMPORAL_ADDRESS", "DATABASE_URL", "OPA_URL"):
        env[key] = ""
    proc = run_cli("demo", "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["executed"] >= 1 and out["approved"] >= 1
    assert out["rejected"] >= 1 and out["pending"] >= 1
    # A follow-up after the wait; the supervisor settled a contact by priority; the
    # expansion run ended on its goal; the compliance run recorded; a forecast was written.
    assert out["follow_up"] and set(out["follow_up"]) == {"executed"}  # the human help, approved
    assert {"kind": "contact", "winner": "churn_rescue", "other": "expansion", "outcome": "preempted"} in out["conflicts"]
    assert out["expansion_exit"] == "goal_met"
    assert "executed" in out["compliance"]
    assert out["rolled_back"] >= 1 and out["emails_delivered"] >= 3
    assert 0 <= out["crm_forecast"]["renewal_probability"] <= 1


async def test_a_large_import_is_stored_in_batches_and_counts_every_event(stack: Stack, tmp_path: Path) -> None:
    from datetime import timedelta

    from autopilot.runtime.store.events import Event

    account, = stack.pick("smb", max_arr=50_000)
    day = (stack.services.clock() - timedelta(days=10)).isoformat()  # history: no trigger
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps({"account_id": account, "type": "login", "logins": 1, "occurred_at": day})
                              for _ in range(1100)))
    proc = await arun_cli("events", "import", str(path), "--json", env=stack_env(stack))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"ok": True, "imported": 1100, "again": 0, "started": []}
    from sqlmodel import Session, select

    with Session(stack.db) as s:
        assert len(s.exec(select(Event.id).where(Event.account_id == account)).all()) == 1100
