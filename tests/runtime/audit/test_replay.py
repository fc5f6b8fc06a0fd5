"""Replay for auditors on a real run: Temporal dev server, regopy, SQLite, the CLI.

Each gate input is decided again by the bundle its run pinned (kept by hash in the
store when the engine loaded it) and by today's: a hot reload between the run and the
replay must show up as decisions that would differ, never as ones not reproduced."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from autopilot.runtime.audit import report_html
from autopilot.runtime.audit.replay import ReplayReport, Step, read_history, replay_run
from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.policy.rego import RegoEngine
from autopilot.runtime.store.actions import PolicyDecisionRecord
from autopilot.runtime.store.policy_bundles import PolicyBundle
from tests.conftest import REPO, Stack, make_settings

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
        check=False,
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
    # Today's engine is the run's: every gate input decides as it did, and the pinned
    # bundle (stored when the engine loaded it) reproduces each logged decision.
    assert len(report.regates) >= 2 and not any(r.differs for r in report.regates)
    assert all(r.reproduces and r.pinned_stored and r.gap is None for r in report.regates)
    assert report.ok
    # What the store holds around the run: the trigger, the planner's in/out, the costs.
    ctx = report.context
    assert ctx is not None and ctx.account_id == wf_id.rsplit(":", 1)[1]
    assert ctx.events and all(e.account_id == ctx.account_id for e in ctx.events)
    plan = next(s for s in report.steps if s.step == "plan")
    assert plan.detail["input"]["assessment"]["reasons"] == plan.detail["explanation"]
    assert plan.detail["output"]["tool"] == plan.detail["tool"]
    assert {c.status for c in ctx.costs} == {"executed", "rejected"}
    (sent,) = [c for c in ctx.costs if c.status == "executed"]
    assert sent.booked == sent.expected_cost and ctx.total_booked == sent.expected_cost


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
    assert signed.returncode == 0 and json.loads(signed.stdout)["checkpoints"][0]["seq"] > 0
    ok = cli(stack, "audit", "verify", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"], ok.stdout

    with Session(stack.db) as s:
        s.connection().exec_driver_sql(
            "DELETE FROM auditentry WHERE seq = (SELECT max(seq) FROM auditentry)"
        )
        s.commit()
    cut = cli(stack, "audit", "verify", "--json")
    assert cut.returncode == 1 and json.loads(cut.stdout)["first"]["code"] == "audit.truncated"


async def _replay(stack: Stack, wf_id: str, today: Any) -> ReplayReport:
    history = await stack.client.get_workflow_handle(wf_id).fetch_history()
    with Session(stack.db) as s:
        return await replay_run(history, s, today)


async def test_after_a_hot_reload_replay_reproduces_with_the_pinned_bundle_and_flags_today(
    stack_factory: Any, tmp_path: Path
) -> None:
    bundle = tmp_path / "policies"
    shutil.copytree(make_settings(tmp_path).policies_path, bundle)
    settings = make_settings(tmp_path, policies_dir=bundle)
    async with stack_factory(settings=settings) as stack:
        pinned = stack.services.policy.bundle_hash
        wf_id = await approve_then_reject(stack)
        with (bundle / "autopilot" / "input" / "policy.rego").open("a") as f:
            f.write(FREEZE)
        today = stack.services.policy.reload()  # what the worker's watcher does
        assert today != pinned
        with Session(stack.db) as s:  # both kept by hash, the old one's files unchanged
            kept = {b.hash: b.files for b in s.exec(select(PolicyBundle))}
        assert {pinned, today} <= set(kept) and FREEZE not in str(kept[pinned])

        # A fresh engine on today's files (as the CLI builds it) holds only today's
        # bundle: the pinned one can only come from the store.
        report = await _replay(stack, wf_id, RegoEngine(bundle))
        assert all(r.reproduces and r.bundle_then == pinned for r in report.regates)
        changed = [r for r in report.regates if r.differs]
        assert changed and all(
            r.outcome_now == "deny"
            and "input.frozen" in r.codes_now
            and "input.frozen" not in r.codes_pinned
            for r in changed
        )
        assert any(not r.differs for r in report.regates)  # the offer is no email
        assert not report.ok and report.as_json()["differs"] == len(changed)

        # A logged decision the pinned bundle does not give: the log is wrong, flagged.
        with Session(stack.db) as s:
            row = s.exec(
                select(PolicyDecisionRecord).where(
                    col(PolicyDecisionRecord.id) == changed[0].decision_id
                )
            ).one()
            row.result = {
                **row.result,
                "allow": False,
                "require_approval": False,
                "deny": [{"code": "budget.tampered", "msg": "edited after the fact"}],
            }
            s.add(row)
            s.commit()
        tampered = await _replay(stack, wf_id, RegoEngine(bundle))
        (bad,) = [r for r in tampered.regates if r.reproduces is False]
        assert bad.decision_id == changed[0].decision_id and bad.mismatch
        assert tampered.as_json()["mismatches"] == 1

        # The pinned bundle gone from the store: a gap on every decision, never skipped.
        with Session(stack.db) as s:
            s.delete(s.get(PolicyBundle, pinned))
            s.commit()
        gaps = await _replay(stack, wf_id, RegoEngine(bundle))
        assert len(gaps.regates) == len(report.regates)
        assert all(r.gap and r.reproduces is None and not r.pinned_stored for r in gaps.regates)
        assert gaps.as_json()["gaps"] == len(gaps.regates) and not gaps.ok


async def test_whatif_on_a_run_shows_the_email_step_changing_and_html_shows_the_decisions(
    stack: Stack, tmp_path: Path
) -> None:
    wf_id = await approve_then_reject(stack)
    bundle = tmp_path / "freeze"
    shutil.copytree(stack.settings.policies_path, bundle)
    with (bundle / "autopilot" / "input" / "policy.rego").open("a") as f:
        f.write(FREEZE)

    done = cli(stack, "audit", "whatif", wf_id, "--bundle", str(bundle), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    with Session(stack.db) as s:
        tools = {
            r.run_key: r.input["action"]["tool"]
            for r in s.exec(select(PolicyDecisionRecord))
            if r.run_key.startswith(f"{wf_id}/")
        }
    assert out["evaluated"] == len(out["steps"]) >= 2
    for step in out["steps"]:
        email = tools[step["run_key"]] == "send_email"
        assert step["changed"] == email, step
        if email:
            assert step["outcome_after"] == "deny" and "input.frozen" in step["codes_after"]
            assert step["outcome_before"] == "require_approval" and step["roles_before"]
    assert out["changed"] == sum(t == "send_email" for t in tools.values()) >= 1
    bad = cli(stack, "audit", "whatif", wf_id, "--bundle", str(tmp_path / "nope"), "--json")
    assert bad.returncode == 2 and "--bundle" in json.loads(bad.stdout)["error"]

    page = tmp_path / "report" / "replay.html"
    exported = tmp_path / "h.json"
    exported.write_text((await stack.client.get_workflow_handle(wf_id).fetch_history()).to_json())
    done = cli(
        stack, "audit", "replay", wf_id, "--history", str(exported), "--html", str(page), "--json"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    html = page.read_text()
    assert out["html"] == str(page) and html.startswith("<!doctype html>")
    assert html.count('<tr class="decision">') == len(out["regate"]) >= 2
    for g in out["regate"]:
        assert g["run_key"] in html and g["bundle_then"][:12] in html
    assert "reproduced" in html and "WOULD DIFFER" not in html


def test_the_html_report_escapes_what_the_run_recorded() -> None:
    step = Step(1, "2026-01-01T00:00:00", "wf/1/0", "plan", "agent:x", "<script>x()</script>", {})
    report = ReplayReport(workflow_id="wf<b>", events=3, replay_failure=None, steps=[step])
    html = report_html.render(report)
    assert "<script>" not in html and "&lt;script&gt;x()&lt;/script&gt;" in html
    assert "wf&lt;b&gt;" in html
