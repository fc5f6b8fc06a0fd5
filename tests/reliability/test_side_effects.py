"""Every side effect ends delivered once, known not sent, or visibly unknown: the real
workflow, gate and executor against an SMTP server that fails on purpose; effects are
counted at the server."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from temporalio import activity
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from autopilot.runtime.contracts.approval import ApprovalOutcome, ApprovalVote
from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.devstack.users import demo_user_id
from autopilot.runtime.execution.outcomes import reconcile_once
from autopilot.runtime.graph.builder import LOCAL_GRAPH
from autopilot.runtime.policy.rego import RegoEngine
from autopilot.runtime.store.accounts import Contact
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.approvals import ApprovalVote as VoteRow
from autopilot.runtime.store.audit import AuditEntry
from autopilot.runtime.store.outcomes import OutcomeCheck
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.runtime.store.customer import CostEntry
from autopilot.tools.registry import SmtpConfig
from tests.conftest import REPO, Stack, free_port, make_settings, wait_for
from tests.reliability.faults import FaultySmtp
from tests.runtime.test_cli import arun_cli, stack_env

OLD_RETRY_ATTEMPTS = 10  # the execute activity's old policy: 10 attempts in about 68 s


@pytest.fixture
async def faulty_stack(stack_factory: Any, tmp_path: Path) -> AsyncIterator[tuple[Stack, FaultySmtp]]:
    folder = tmp_path / "policies"
    shutil.copytree(REPO / "policies", folder)
    settings = make_settings(tmp_path, send_max_backoff_s=1.0, smtp_timeout=0.5)
    server = FaultySmtp(port=free_port(), reply_delay_s=1.5)
    async with stack_factory(settings=settings, policy=RegoEngine(folder)) as stack:
        stack.services.smtp = SmtpConfig(host="127.0.0.1", port=server.port,
                                         mail_from="cs@vendor.example", timeout=0.5)
        yield stack, server
        server.stop()


def _call(stack: Stack) -> ToolCallRecord | None:
    with Session(stack.db) as s:
        return s.exec(select(ToolCallRecord)).first()


def _action(stack: Stack, wf_id: str) -> ActionRecord:
    with Session(stack.db) as s:
        return s.exec(select(ActionRecord).where(ActionRecord.workflow_id == wf_id)).one()


async def test_smtp_down_past_the_old_retry_window_then_back_delivers_once(faulty_stack) -> None:  # type: ignore[no-untyped-def]
    stack, server = faulty_stack
    account, = stack.pick("smb", max_arr=50_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    # Down for more attempts than the old policy made before it failed the run for good.
    # Between two attempts the call is known not sent.
    await wait_for(lambda: (c := _call(stack)) is not None and c.attempts > OLD_RETRY_ATTEMPTS
                   and c.status == "failed", timeout=60, what="retries past the old window")
    assert _action(stack, wf_id).status == "executing"  # still holding its reservation
    server.start()
    result = await stack.run_result(wf_id)
    assert [o.status for o in result.outcomes] == ["executed"]
    assert len(server.stored) == 1
    assert server.message_ids() == [result.outcomes[0].output["message_id"]]


async def test_a_lost_reply_is_an_inbox_check_and_a_resend_keeps_the_message_id(faulty_stack) -> None:  # type: ignore[no-untyped-def]
    stack, server = faulty_stack
    server.mode = "lost_reply"
    server.start()
    account, = stack.pick("smb", max_arr=50_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    result = await stack.run_result(wf_id)
    assert [(o.status, o.codes) for o in result.outcomes] == [("unknown", ["tool.outcome_unknown"])]
    assert len(server.stored) == 1  # stored once; never resent blindly
    key = _action(stack, wf_id).run_key
    assert _action(stack, wf_id).status == "unknown"
    with Session(stack.db) as s:
        check = s.get(OutcomeCheck, key)
        assert check is not None and check.status == "open" and check.tool == "send_email"
        assert s.exec(select(CostEntry).where(CostEntry.action_key == key)).all() == []  # not booked yet
    assert (await reconcile_once(stack.services)).still_unknown == 1  # SMTP cannot be asked
    assert len(server.stored) == 1

    server.mode = "ok"
    owner = stack.owner(account)
    out = await arun_cli("approvals", "outcomes", "--as", owner, "--json", env=stack_env(stack))
    assert [c["run_key"] for c in json.loads(out.stdout)["outcomes"]] == [key], out.stderr
    out = await arun_cli("approvals", "resolve", key, "--as", "audrey", "--outcome", "resend", "--json",
                         env=stack_env(stack))
    assert out.returncode != 0 and "outcome.forbidden" in out.stdout  # an auditor may not
    out = await arun_cli("approvals", "resolve", key, "--as", owner, "--outcome", "resend", "--json",
                         env=stack_env(stack))
    assert json.loads(out.stdout) == {"ok": True, "run_key": key, "status": "resend"}
    done = await reconcile_once(stack.services)
    assert done.resent == 1
    assert len(server.stored) == 2 and len(set(server.message_ids())) == 1  # the same Message-ID
    assert _action(stack, wf_id).status == "executed"
    with Session(stack.db) as s:
        assert s.get(OutcomeCheck, key).status == "resent"  # type: ignore[union-attr]
        assert len(s.exec(select(CostEntry).where(CostEntry.action_key == key)).all()) == 1
        steps = [e.step for e in s.exec(select(AuditEntry).where(AuditEntry.run_key == key))]
        assert steps[-2:] == ["outcome/0/resend", "outcome/1/resent"]  # asked, then done
    assert (await reconcile_once(stack.services)).resent == 0  # nothing more to do
    assert len(server.stored) == 2


async def test_a_person_marks_an_unknown_outcome_sent_and_nothing_more_goes_out(faulty_stack) -> None:  # type: ignore[no-untyped-def]
    stack, server = faulty_stack
    server.mode = "lost_reply"
    server.start()
    account, = stack.pick("smb", max_arr=50_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    await stack.run_result(wf_id)
    key = _action(stack, wf_id).run_key
    owner = stack.owner(account)
    listed = (await stack.http.get("/outcomes", headers=stack.headers(owner))).json()
    assert [(c["run_key"], c["tool"], c["status"]) for c in listed] == [(key, "send_email", "open")]
    other = next(c for c in ("alice", "bob", "chen", "dana", "emeka") if demo_user_id("demo", c) != owner)
    assert (await stack.http.get("/outcomes", headers=stack.headers(other))).json() == []  # not their book
    page = (await stack.http.get("/inbox", headers=stack.headers(owner))).text
    assert f'data-key="{key}"' in page and "Outcome unknown (1)" in page  # in the web inbox too
    url = f"/outcomes/{key}/resolve"
    r = await stack.http.post(url, json={"outcome": "sent"}, headers=stack.headers(other))
    assert r.status_code == 404
    r = await stack.http.post(url, json={"outcome": "sent"}, headers=stack.headers("audrey"))
    assert r.status_code == 403  # an auditor reads, never decides
    r = await stack.http.post(url, json={"outcome": "sent", "note": "seen in the CRM's mailbox"},
                              headers=stack.headers(owner))
    assert r.status_code == 200 and r.json()["status"] == "sent"
    r = await stack.http.post(url, json={"outcome": "resend"}, headers=stack.headers(owner))
    assert r.status_code == 409  # closed: a second answer changes nothing
    await reconcile_once(stack.services)
    assert len(server.stored) == 1 and _action(stack, wf_id).status == "executed"
    assert _call(stack).status == "done"  # type: ignore[union-attr]


async def test_a_refused_recipient_fails_once_known_not_sent(faulty_stack) -> None:  # type: ignore[no-untyped-def]
    stack, server = faulty_stack
    server.mode = "reject"
    server.start()
    account, = stack.pick("smb", max_arr=50_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    result = await stack.run_result(wf_id)
    assert [(o.status, o.codes) for o in result.outcomes] == [("failed", ["tool.failed"])]
    assert server.stored == [] and _call(stack).attempts == 1  # type: ignore[union-attr]  # not retried
    with Session(stack.db) as s:
        assert s.exec(select(OutcomeCheck)).all() == []  # known: nothing for a person to check


async def test_a_send_waiting_past_a_policy_change_is_gated_again(faulty_stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    stack, server = faulty_stack
    account, = stack.pick("smb", max_arr=50_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    await wait_for(lambda: (c := _call(stack)) is not None and c.attempts >= 2, timeout=30,
                   what="a failed first send")
    path = tmp_path / "policies" / "autopilot" / "budget" / "data.json"
    doc = json.loads(path.read_text())
    doc["limits"]["segments"]["smb"]["account_quarter_pct_of_arr"] = 0
    path.write_text(json.dumps(doc))
    stack.services.policy.reload()
    server.start()
    result = await stack.run_result(wf_id)
    assert [o.status for o in result.outcomes] == ["denied"]
    assert "budget.account_exceeded" in result.outcomes[0].codes
    assert server.stored == []


async def test_an_approved_send_still_failing_past_the_approvals_validity_stops_unsent(faulty_stack) -> None:  # type: ignore[no-untyped-def]
    """Approved, then the server is down for longer than an approval holds: the send
    stops, known not sent, instead of going out days after the person said yes."""
    stack, server = faulty_stack
    account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    email, = await stack.pending_for(account)
    assert (await stack.decide(email, "approve")).status_code == 200
    await wait_for(lambda: (c := _call(stack)) is not None and c.attempts >= 2, timeout=30,
                   what="a failed first send")
    stack.services.settings.approval_valid_hours = 5 / 3600  # an approval holds 5 s here
    await asyncio.sleep(6)
    server.start()
    key = _call(stack).idempotency_key  # type: ignore[union-attr]

    def status() -> str:
        with Session(stack.db) as s:
            return s.get(ActionRecord, key).status  # type: ignore[union-attr]

    await wait_for(lambda: status() == "failed", timeout=30, what="the send to stop")
    assert server.stored == []
    with Session(stack.db) as s:
        entry = s.exec(select(AuditEntry).where(AuditEntry.step == "execute", AuditEntry.run_key == key)).one()
        assert entry.decision["code"] == "approval.lapsed"


async def test_an_approval_the_api_never_stored_is_stored_by_the_send_before_it_goes_out(faulty_stack) -> None:  # type: ignore[no-untyped-def]
    """The deciding vote rides in the run's answer; the API stores it too, but may die
    right after the Update. The send stores it first: with the mail server down, the
    inbox says approved (not pending) while the send is retried, and the vote is kept."""
    stack, server = faulty_stack
    account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    email, = await stack.pending_for(account)
    owner = stack.owner(account)
    vote = ApprovalVote(approval_id=email["id"], payload_hash=email["payload_hash"], role="csm",
                        verdict="approve", actor=owner)
    handle = stack.client.get_workflow_handle(wf_id)
    assert (await handle.execute_update("decide", vote, result_type=ApprovalOutcome)).status == "approved"
    await wait_for(lambda: (c := _call(stack)) is not None and c.attempts >= 1, timeout=30,
                   what="a failed first send")
    row, = [a for a in stack.approval_rows() if a.id == email["id"]]
    assert (row.status, row.decided_by) == ("approved", owner) and row.decided_at is not None
    with Session(stack.db) as s:
        votes = s.exec(select(VoteRow).where(VoteRow.approval_id == email["id"])).all()
    assert [(v.role, v.verdict, v.actor) for v in votes] == [("csm", "approve", owner)]
    server.start()
    await wait_for(lambda: len(server.stored) == 1, timeout=30, what="the send once the server is back")


SENDING = (  # the (local) activities that send: `prepare` acts first
    f"{LOCAL_GRAPH}.prepare",
    f"{LOCAL_GRAPH}.act",
    f"{LOCAL_GRAPH}.finish",
)


class _DiesMidCall(Interceptor):
    """The first execute attempt sends, then "dies" before its end is recorded: the key
    is left `started`, as a kill -9 between the hand-over and the commit leaves it."""

    def __init__(self, db: Any, after: Any = None) -> None:
        self.db = db
        self.after = after  # what changes in the world before the retry

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        outer = self

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                result = await super().execute_activity(input)
                info = activity.info()
                if info.activity_type in SENDING and info.attempt == 1:
                    with Session(outer.db) as s:
                        for row in s.exec(select(ToolCallRecord)):
                            row.status, row.finished_at = "started", None
                            s.add(row)
                        s.commit()
                    if outer.after is not None:
                        outer.after()
                    raise RuntimeError("worker killed mid-call")
                return result

        return Inbound(next)


async def test_a_call_left_started_by_a_dead_worker_becomes_an_inbox_check(stack_factory: Any, tmp_path: Path) -> None:
    """Before, the key stayed `started` for ever, the action failed and nobody was told."""
    settings = make_settings(tmp_path)
    chaos = _DiesMidCall(None)
    async with stack_factory(settings=settings, worker_kwargs={"interceptors": [chaos]}) as stack:
        chaos.db = stack.db
        account, = stack.pick("smb", max_arr=50_000)
        wf_id, = await stack.post_events(drop_events(stack.db, account))
        result = await stack.run_result(wf_id)
        assert [(o.status, o.codes) for o in result.outcomes] == [("unknown", ["tool.outcome_unknown"])]
        assert len(stack.mails()) == 1  # sent once, not again
        key = _action(stack, wf_id).run_key
        with Session(stack.db) as s:
            assert s.get(ToolCallRecord, key).status == "unknown"  # type: ignore[union-attr]
            assert s.get(OutcomeCheck, key).status == "open"  # type: ignore[union-attr]


async def test_a_retry_after_the_call_began_does_not_decide_again(stack_factory: Any, tmp_path: Path) -> None:
    """The gate, the send and its record share one activity: a retry of it must not ask the
    gate again once the call began. Here the recipient opts out after the email left; a
    fresh decision would deny it and record "denied" over a message that was sent."""
    chaos = _DiesMidCall(None)
    async with stack_factory(settings=make_settings(tmp_path), worker_kwargs={"interceptors": [chaos]}) as stack:
        chaos.db = stack.db
        account, = stack.pick("smb", max_arr=50_000)

        def opt_out_everyone() -> None:
            with Session(stack.db) as s:
                for c in s.exec(select(Contact).where(Contact.account_id == account)):
                    c.opted_out = True
                    s.add(c)
                s.commit()

        chaos.after = opt_out_everyone
        wf_id, = await stack.post_events(drop_events(stack.db, account))
        result = await stack.run_result(wf_id)
        assert [(o.status, o.codes) for o in result.outcomes] == [("unknown", ["tool.outcome_unknown"])]
        assert len(stack.mails()) == 1
        key = _action(stack, wf_id).run_key
        with Session(stack.db) as s:
            assert s.get(OutcomeCheck, key).status == "open"  # type: ignore[union-attr]
