"""Replay for auditors on a real run: Temporal dev server, regopy, SQLite, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from sqlmodel import Session

from autopilot.runtime.audit.replay import read_history, replay_run
from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.policy.rego import RegoEngine
from tests.conftest import REPO, Stack

FREEZE = """
deny contains {"code": "input.frozen", "msg": "emails frozen"} if input.action.tool == "send_email"
"""


async def approve_then_reject(stack: Stack) -> str:
    (account,) = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    (wf_id,) = await stack.post_events(drop_events(stack.db, account))
    (email,) = await stack.pending_for(account)
    await stack.decide(email, "approve")
    (offer,) = await stack.pending_for(account)
    await stack.decide(offer, "reject", reason="too generous")
    await stack.run_result(wf_id)
    return wf_id


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AUTOPILOT_DATA_DIR": str(stack.settings.data_dir),
        "AUTOPILOT_DATABASE_URL": stack.settings.db_url,
        "AUTOPILOT_POLICIES_DIR": str(stack.settings.policies_path),
    }
    return subprocess.run(
        [sys.executable, "-m", "autopilot.runtime.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


async def test_a_real_run_replays_and_shows_its_decisions(stack: Stack, tmp_path: Path) -> None:
    wf_id = await approve_then_reject(stack)
    history = await stack.client.get_workflow_handle(wf_id).fetch_history()
    exported = tmp_path / "history.json"
    exported.write_text(history.to_json())

    with Session(stack.db) as s:
        report = await replay_run(read_history(exported, wf_id), s, stack.services.policy)
    assert report.replay_failure is None and report.events == len(history.events)
    by_run: dict[str, list[str]] = {}
    for step in report.steps:
        by_run.setdefault(step.run_key, []).append(step.step)
    assert sorted(by_run.values()) == [
        ["plan", "gate", "approve", "execute", "record"],
        ["plan", "gate", "approve", "record"],
    ]
    gate = next(s for s in report.steps if s.step == "gate")
    assert gate.detail["bundle_hash"] == stack.services.policy.bundle_hash
    assert gate.detail["outcome"] == "approval" and gate.detail["roles"]
    approvals = [s for s in report.steps if s.step == "approve"]
    assert sorted(a.detail["verdict"] for a in approvals) == ["approve", "reject"]
    assert all(a.detail["by"] and a.detail["decided_at"] for a in approvals)
    executed = next(s for s in report.steps if s.step == "execute")
    assert executed.detail["idempotency_key"] == executed.run_key
    assert executed.detail["status"] == "done"
    # Today's engine is the run's: every gate input decides as it did.
    assert len(report.regates) >= 2 and not any(r.differs for r in report.regates)
    assert report.ok


async def test_a_decision_that_would_differ_today_is_flagged(stack: Stack, tmp_path: Path) -> None:
    wf_id = await approve_then_reject(stack)
    bundle = tmp_path / "policies"
    shutil.copytree(stack.settings.policies_path, bundle)
    with (bundle / "autopilot" / "input" / "policy.rego").open("a") as f:
        f.write(FREEZE)
    history = await stack.client.get_workflow_handle(wf_id).fetch_history()
    with Session(stack.db) as s:
        report = await replay_run(history, s, RegoEngine(bundle))
    changed = [r for r in report.regates if r.differs]
    assert changed and all(
        r.outcome_now == "deny" and "input.frozen" in r.codes_now for r in changed
    )
    assert any(not r.differs for r in report.regates)  # the offer is no email: unchanged
    assert not report.ok


async def test_the_cli_replays_an_exported_history_and_verifies_the_trail(
    stack: Stack, tmp_path: Path
) -> None:
    wf_id = await approve_then_reject(stack)
    exported = tmp_path / "h.json"
    exported.write_text((await stack.client.get_workflow_handle(wf_id).fetch_history()).to_json())

    done = cli(stack, "audit", "replay", wf_id, "--history", str(exported), "--json")
    out = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    assert out["deterministic"] and out["differs"] == 0
    assert {"plan", "gate", "approve", "execute", "record"} <= {s["step"] for s in out["timeline"]}

    signed = cli(stack, "audit", "checkpoint", "--json")
    assert signed.returncode == 0 and json.loads(signed.stdout)["checkpoint"]["seq"] > 0
    ok = cli(stack, "audit", "verify", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"], ok.stdout

    with Session(stack.db) as s:
        s.connection().exec_driver_sql(
            "DELETE FROM auditentry WHERE seq = (SELECT max(seq) FROM auditentry)"
        )
        s.commit()
    cut = cli(stack, "audit", "verify", "--json")
    assert cut.returncode == 1 and json.loads(cut.stdout)["first"]["code"] == "audit.truncated"
