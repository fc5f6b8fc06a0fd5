"""The agent run end to end: event → workflow → graph → gate → approval → tool → audit."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowHistory,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.langgraph import LangGraphPlugin
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Replayer,
)
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.ledger.spend import ledger
from autopilot.runtime.contracts.approval import ApprovalOutcome, ApprovalVote
from autopilot.runtime.graph.builder import LOCAL_GRAPH, build_graphs
from autopilot.runtime.policy.engine import UNAVAILABLE
from autopilot.runtime.policy.rego import RegoEngine
from autopilot.runtime.store.accounts import Contact
from autopilot.runtime.store.actions import ActionRecord, PolicyDecisionRecord
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.approvals import ApprovalVote as VoteRow
from autopilot.runtime.store.audit import AuditEntry, verify_chain
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.runtime.worker import build_worker
from autopilot.workflows.agent_run.workflow import AgentRunWorkflow
from tests.conftest import REPO, Stack, wait_for


async def test_allowed_action_executes_exactly_once(stack: Stack) -> None:
    account, = stack.pick("smb", max_arr=50_000)
    started = await stack.post_events(drop_events(stack.db, account))
    assert started == [f"agent:churn_rescue:{account}"]
    result = await stack.run_result(started[0])
    assert [(o.tool, o.status) for o in result.outcomes] == [("send_email", "executed")]
    mails = stack.mails()
    assert len(mails) == 1
    assert mails[0].rcpt_to.startswith("champion@")
    assert mails[0].message_id == result.outcomes[0].output["message_id"]
    with Session(stack.db) as s:
        steps = [e.step for e in s.exec(select(AuditEntry).order_by(AuditEntry.seq))]
        assert steps == ["plan", "gate", "execute", "record"]
        entry = s.exec(select(AuditEntry).where(AuditEntry.step == "gate")).one()
        assert entry.bundle_hash == stack.services.policy.bundle_hash and len(entry.input_hash) == 64
        assert verify_chain(s) == (True, 4)


async def test_approval_required_action_waits_and_executes_after_approve(stack: Stack) -> None:
    account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    email, = await stack.pending_for(account)
    assert email["action"]["tool"] == "send_email" and email["roles"] == ["csm"]
    handle = stack.client.get_workflow_handle(wf_id)
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    assert stack.mails() == []  # nothing executes while the approval is open

    owner = stack.owner(account)
    r = await stack.decide(email, "approve")
    assert r.status_code == 200
    answer = r.json()
    assert answer.pop("decided_at")  # the vote's time, as the run stamped it
    assert answer == {"approval_id": email["id"], "status": "approved", "actor": owner, "remaining_roles": [],
                      "new_approval_id": None, "codes": []}
    offer, = await stack.pending_for(account)
    assert offer["action"]["tool"] == "send_offer" and offer["roles"] == ["csm", "manager"]
    # Several roles: the CSM's vote alone does not execute it.
    first = await stack.decide(offer, "approve")
    assert first.json()["status"] == "pending" and first.json()["remaining_roles"] == ["manager"]
    assert len(stack.mails()) == 1
    assert (await stack.decide(offer, "approve", user="maria")).json()["status"] == "approved"

    result = await stack.run_result(wf_id)
    assert [o.status for o in result.outcomes] == ["executed", "executed"]
    assert len(stack.mails()) == 2
    decided = {a.id: a for a in stack.approval_rows()}
    assert decided[email["id"]].decided_by == owner and decided[email["id"]].decided_at is not None
    assert decided[offer["id"]].status == "approved" and decided[offer["id"]].decided_by == "maria"
    # Each inbox item names the action it is about: an action's approvers are found from
    # its key (the ADMT record's reviewers, the replay's approvals).
    with Session(stack.db) as s:
        keys = {r.run_key for r in s.exec(select(ActionRecord).where(ActionRecord.account_id == account))}
    assert {decided[email["id"]].run_key, decided[offer["id"]].run_key} <= keys


async def test_rejected_action_never_executes_and_is_not_proposed_again(stack: Stack) -> None:
    account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    email, = await stack.pending_for(account)
    r = await stack.decide(email, "reject", reason="they are in a legal dispute")
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    offer, = await stack.pending_for(account)
    assert (await stack.decide(offer, "reject", user="maria", reason="no discounts this quarter")).status_code == 200
    result = await stack.run_result(wf_id)
    assert [o.status for o in result.outcomes] == ["rejected", "rejected"]
    assert stack.mails() == []
    with Session(stack.db) as s:
        assert s.exec(select(ToolCallRecord)).all() == []
    row = next(a for a in stack.approval_rows() if a.id == email["id"])
    assert row.decision_reason == "they are in a legal dispute"
    with Session(stack.db) as s:  # rejected actions hold no budget, contact or discount
        spent = ledger(s, account_id=account, segment="enterprise", now=stack.services.clock())
    assert (spent.account_spend_quarter, spent.high_touch_contacts_quarter, spent.active_discount_pct) == (0, 0, 0)
    # The run now sleeps until its follow-up; a new run for the account (the old one
    # stopped) plans afresh: the rejected tools are within their cool-down.
    await stack.client.get_workflow_handle(wf_id).terminate("a new run")
    wf2, = await stack.post_events([{"account_id": account, "type": "nps", "score": 0}])
    again = await stack.run_result(wf2)
    assert again.outcomes == []
    assert stack.mails() == []


async def test_stale_repeated_and_unbound_decisions_are_refused(stack: Stack) -> None:
    account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    email, = await stack.pending_for(account)
    stale = await stack.decide(email, "approve", payload_hash="f" * 64)
    assert stale.status_code == 409
    no_reason = await stack.decide(email, "reject")
    assert no_reason.status_code == 422
    # Straight to the workflow, past the API: the Update validator refuses too.
    handle = stack.client.get_workflow_handle(wf_id)
    for bad in (ApprovalVote(approval_id=email["id"], payload_hash="0" * 64, role="csm", verdict="approve", actor="x"),
                ApprovalVote(approval_id="apr_unknown", payload_hash=email["payload_hash"], role="csm",
                             verdict="approve", actor="x"),
                ApprovalVote(approval_id=email["id"], payload_hash=email["payload_hash"], role="vp",
                             verdict="approve", actor="x")):
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update("decide", bad)
    assert stack.mails() == []
    assert (await stack.decide(email, "approve")).status_code == 200
    again = await stack.decide(email, "approve", user="maria")
    assert again.status_code == 409
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update("decide", ApprovalVote(
            approval_id=email["id"], payload_hash=email["payload_hash"], role="csm", verdict="reject", actor="x"))
    await wait_for(lambda: len(stack.mails()) == 1, what="the approved email")
    offer, = await stack.pending_for(account)
    # One person cannot fill two roles of one item.
    assert (await stack.decide(offer, "approve", user="maria")).status_code == 200
    twice = await stack.decide(offer, "approve", user="maria")
    assert twice.status_code == 409
    await stack.decide(offer, "reject", reason="done here")
    result = await stack.run_result(wf_id)
    assert [o.status for o in result.outcomes] == ["executed", "rejected"]
    assert len(stack.mails()) == 1


async def test_denied_action_never_executes(stack: Stack) -> None:
    account, = stack.pick("mid_market", min_arr=50_000, severe=True)
    with Session(stack.db) as s:  # no ADMT pre-use notice on record: no offer (a significant decision)
        for c in s.exec(select(Contact).where(Contact.account_id == account)):
            c.notice_at = None
            s.add(c)
        s.commit()
    wf_id, = await stack.post_events(drop_events(stack.db, account, severe=True))
    result = await stack.run_result(wf_id)
    by_tool = {o.tool: o for o in result.outcomes}
    assert by_tool["send_email"].status == "executed"
    assert by_tool["send_offer"].status == "denied"
    assert "consent.no_notice" in by_tool["send_offer"].codes
    mails = stack.mails()
    assert len(mails) == 1 and "offer" not in mails[0].subject.lower()
    with Session(stack.db) as s:
        outcomes = sorted(d.outcome for d in s.exec(select(PolicyDecisionRecord)))
        assert outcomes == ["allow", "deny"]


async def test_policy_engine_failure_executes_nothing(stack_factory: Any, tmp_path: Path) -> None:
    broken = tmp_path / "broken-policies" / "autopilot"
    broken.mkdir(parents=True)
    (broken / "policy.rego").write_text(
        'package autopilot\n\ndecision := {"allow": true}\n\ndecision := {"allow": false} if input.action\n')
    async with stack_factory(policy=RegoEngine(broken.parent)) as stack:
        account, = stack.pick("mid_market", min_arr=50_000)
        wf_id, = await stack.post_events(drop_events(stack.db, account))
        result = await stack.run_result(wf_id)
        assert [o.status for o in result.outcomes] == ["denied", "denied"]
        assert all(o.codes == [UNAVAILABLE] for o in result.outcomes)
        assert stack.mails() == []


class _FailAfterSideEffect(Interceptor):
    """Loses the execute activity's completion once, after the email went out —
    as when a worker dies between the SMTP handshake and reporting back."""

    def __init__(self) -> None:
        self.attempts: list[int] = []

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        outer = self

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                result = await super().execute_activity(input)
                info = activity.info()
                # The steps that gate, send and record: `prepare` (the first action)
                # and `act` (the others).
                if info.activity_type in (f"{LOCAL_GRAPH}.prepare", f"{LOCAL_GRAPH}.act"):
                    outer.attempts.append(info.attempt)
                    if info.attempt == 1:
                        raise RuntimeError("worker lost after the side effect")
                return result

        return Inbound(next)


async def test_activity_retried_after_email_sent_does_not_send_twice(stack_factory: Any) -> None:
    chaos = _FailAfterSideEffect()
    async with stack_factory(worker_kwargs={"interceptors": [chaos]}) as stack:
        account, = stack.pick("smb", max_arr=50_000)
        wf_id, = await stack.post_events(drop_events(stack.db, account))
        result = await stack.run_result(wf_id)
        assert chaos.attempts == [1, 2]
        assert [o.status for o in result.outcomes] == ["executed"]
        assert len(stack.mails()) == 1
        with Session(stack.db) as s:
            call, = s.exec(select(ToolCallRecord)).all()
            assert call.status == "done" and call.attempts == 1


async def test_history_replays_deterministically(stack: Stack) -> None:
    account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    email, = await stack.pending_for(account)
    await stack.decide(email, "approve")
    offer, = await stack.pending_for(account)
    await stack.decide(offer, "reject", reason="too generous")
    await stack.run_result(wf_id)
    history = await stack.client.get_workflow_handle(wf_id).fetch_history()
    replayer = Replayer(workflows=[AgentRunWorkflow], data_converter=pydantic_data_converter,
                        plugins=[LangGraphPlugin(graphs=build_graphs())])
    replay = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replay.replay_failure is None


async def test_waiting_run_survives_worker_restart(stack: Stack) -> None:
    account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    email, = await stack.pending_for(account)
    await stack.worker.shutdown()
    # A new worker process-equivalent: no cached workflow state, it must replay.
    fresh = build_worker(stack.client, stack.services, stack.task_queue)
    async with fresh:
        assert (await stack.decide(email, "approve")).status_code == 200
        offer, = await stack.pending_for(account)
        await stack.approve_fully(offer)
        result = await stack.run_result(wf_id)
    assert [o.status for o in result.outcomes] == ["executed", "executed"]
    assert len(stack.mails()) == 2


@pytest.mark.parametrize("name", ["agent_run_v1_auto", "agent_run_v1_approve_reject"])
async def test_histories_recorded_before_the_playbook_change_still_replay(name: str) -> None:
    """Runs in flight when the playbook engine shipped (one shared planner, no waits)
    must go on replaying on today's workflow code."""
    text = (Path(__file__).parent / "histories" / f"{name}.json").read_text()
    # The workflow id is not in the events; the run's input names its agent and account.
    started = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
    inp = json.loads(base64.b64decode(started["input"]["payloads"][0]["data"]))
    history = WorkflowHistory.from_json(f"agent:{inp['agent']}:{inp['account_id']}", text)
    replayer = Replayer(workflows=[AgentRunWorkflow], data_converter=pydantic_data_converter,
                        plugins=[LangGraphPlugin(graphs=build_graphs())])
    replay = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replay.replay_failure is None


class _Hold(Interceptor):
    """Holds the (local) activities of one type until released, the ones started before
    the release only; then lets them run, or (`fail`) fails them as not done."""

    def __init__(self, activity_type: str, *, fail: bool = False) -> None:
        self.activity_type = activity_type
        self.fail = fail
        self.held = False
        self.release = asyncio.Event()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        outer = self

        class Inbound(ActivityInboundInterceptor):
            async def execute_activity(self, input: ExecuteActivityInput) -> Any:
                if activity.info().activity_type == outer.activity_type and not outer.release.is_set():
                    outer.held = True
                    # Bounded: a failing test (never releasing) must not hang its teardown.
                    await asyncio.wait_for(outer.release.wait(), timeout=60)
                    if outer.fail:
                        raise ApplicationError("the store went away", non_retryable=True)
                return await super().execute_activity(input)

        return Inbound(super().intercept_activity(next))


def _votes(stack: Stack, approval_id: str) -> list[tuple[str, str, str]]:
    with Session(stack.db) as s:
        rows = s.exec(select(VoteRow).where(VoteRow.approval_id == approval_id)).all()
        return [(v.role, v.verdict, v.actor) for v in rows]


async def test_the_inbox_has_the_item_decided_when_the_approver_is_answered(stack_factory: Any) -> None:
    """The run stores the deciding vote in its next step; the API stores it before it
    answers, so the approver's next look at the inbox shows it decided, the send or not."""
    hold = _Hold(f"{LOCAL_GRAPH}.finish")  # the send after an approval
    async with stack_factory(worker_kwargs={"interceptors": [hold]}) as stack:
        account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
        await stack.post_events(drop_events(stack.db, account))
        email, = await stack.pending_for(account)
        owner = stack.owner(account)
        r = await stack.decide(email, "approve")
        assert r.json()["status"] == "approved"
        await wait_for(lambda: hold.held, what="the send held")
        row, = [a for a in stack.approval_rows() if a.id == email["id"]]
        assert (row.status, row.decided_by) == ("approved", owner)
        assert _votes(stack, email["id"]) == [("csm", "approve", owner)]
        listed = (await stack.http.get("/approvals", headers=stack.headers("maria"))).json()
        assert email["id"] not in {a["id"] for a in listed}
        hold.release.set()
        await wait_for(lambda: len(stack.mails()) == 1, what="the approved send")
        assert _votes(stack, email["id"]) == [("csm", "approve", owner)]  # stored once


async def test_a_rejection_the_api_never_stored_is_stored_with_the_runs_record(stack: Stack) -> None:
    """The API may die right after the Update: the run's record of the rejection stores
    the vote (and the item's status) itself."""
    account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    email, = await stack.pending_for(account)
    owner = stack.owner(account)
    vote = ApprovalVote(approval_id=email["id"], payload_hash=email["payload_hash"], role="csm",
                        verdict="reject", actor=owner, reason="not now")
    handle = stack.client.get_workflow_handle(wf_id)
    assert (await handle.execute_update("decide", vote, result_type=ApprovalOutcome)).status == "rejected"
    with Session(stack.db) as s:
        key = s.exec(select(Approval.run_key).where(Approval.id == email["id"])).one()

    def status() -> str | None:
        with Session(stack.db) as s:
            return s.exec(select(ActionRecord.status).where(ActionRecord.run_key == key)).one()

    await wait_for(lambda: status() == "rejected", what="the rejection recorded")
    row, = [a for a in stack.approval_rows() if a.id == email["id"]]
    assert (row.status, row.decided_by, row.decision_reason) == ("rejected", owner, "not now")
    assert _votes(stack, email["id"]) == [("csm", "reject", owner)]
    assert stack.mails() == []


async def test_the_last_approval_waits_for_an_approval_being_stored_and_decides_nothing_if_it_fails(
    stack_factory: Any,
) -> None:
    hold = _Hold("record_vote", fail=True)  # held, then not stored
    async with stack_factory(worker_kwargs={"interceptors": [hold]}) as stack:
        account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
        wf_id, = await stack.post_events(drop_events(stack.db, account))
        email, = await stack.pending_for(account)
        assert (await stack.decide(email, "approve")).status_code == 200  # one role: decides
        offer, = await stack.pending_for(account)
        assert offer["roles"] == ["csm", "manager"]
        handle = stack.client.get_workflow_handle(wf_id)

        def vote(role: str, actor: str) -> ApprovalVote:
            return ApprovalVote(approval_id=offer["id"], payload_hash=offer["payload_hash"], role=role,
                                verdict="approve", actor=actor)

        first = asyncio.create_task(
            handle.execute_update("decide", vote("csm", stack.owner(account)), result_type=ApprovalOutcome))
        await wait_for(lambda: hold.held, what="the CSM's approval being stored")
        # Every role has voted, but the CSM's approval is not stored yet: the manager's
        # (accepted while the CSM's is held: the held local activity's task is heartbeaten
        # and the next one carries it) waits for it, and decides nothing when it fails.
        last = await handle.start_update("decide", vote("manager", "maria"), result_type=ApprovalOutcome,
                                         wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        hold.release.set()
        with pytest.raises(WorkflowUpdateFailedError):
            await first
        outcome = await last.result()
        assert outcome.status == "pending" and outcome.remaining_roles == ["csm"]
        assert len(stack.mails()) == 1  # the offer is not sent
        # The CSM's role was freed: the CSM approves again, and that decides.
        again = await stack.decide(offer, "approve")
        assert again.json()["status"] == "approved"
        result = await stack.run_result(wf_id)
        assert [o.status for o in result.outcomes] == ["executed", "executed"]
        assert len(stack.mails()) == 2
        rows = {a.id: a for a in stack.approval_rows()}
        assert rows[offer["id"]].status == "approved"


@pytest.fixture
def three_roles(tmp_path: Path) -> RegoEngine:
    """The shipped policy with any discount above finance's threshold: a churn-rescue
    offer then needs the CSM, a manager and finance."""
    folder = tmp_path / "policies"
    shutil.copytree(REPO / "policies", folder)
    path = folder / "autopilot" / "approval" / "data.json"
    doc = json.loads(path.read_text())
    doc["limits"]["finance_discount_pct"] = 0
    path.write_text(json.dumps(doc))
    return RegoEngine(folder)


async def _three_role_offer(stack: Stack) -> tuple[str, dict[str, Any]]:
    account, = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    email, = await stack.pending_for(account)
    assert (await stack.decide(email, "approve")).status_code == 200
    offer, = await stack.pending_for(account)
    assert sorted(offer["roles"]) == ["csm", "finance", "manager"]
    return wf_id, offer


async def _csm_approval_being_stored(
    stack: Stack, hold: _Hold
) -> tuple[Any, dict[str, Any], asyncio.Task[ApprovalOutcome]]:
    """The three-role offer, and the CSM's approval of it sent and held while stored."""
    wf_id, offer = await _three_role_offer(stack)
    handle = stack.client.get_workflow_handle(wf_id)
    first = asyncio.create_task(handle.execute_update(
        "decide", _vote(offer, "csm", stack.owner(offer["account_id"])), result_type=ApprovalOutcome))
    await wait_for(lambda: hold.held, what="the CSM's approval being stored")
    return handle, offer, first


def _vote(offer: dict[str, Any], role: str, actor: str, verdict: str = "approve") -> ApprovalVote:
    return ApprovalVote(approval_id=offer["id"], payload_hash=offer["payload_hash"], role=role,
                        verdict=verdict, actor=actor)  # type: ignore[arg-type]


async def test_two_last_approvals_waiting_at_once_both_go_on_and_the_item_is_approved(
    stack_factory: Any, three_roles: RegoEngine,
) -> None:
    """Three roles: the CSM's approval is being stored while the manager's and finance's
    arrive. Neither may decide before the CSM's is stored, and neither may wait for the
    other: both are stored, and the item is approved once all three are."""
    hold = _Hold("record_vote")  # an approval that decides nothing yet
    async with stack_factory(policy=three_roles, worker_kwargs={"interceptors": [hold]}) as stack:
        handle, offer, first = await _csm_approval_being_stored(stack, hold)
        waiting = await asyncio.gather(*(
            handle.start_update("decide", _vote(offer, role, actor), result_type=ApprovalOutcome,
                                wait_for_stage=WorkflowUpdateStage.ACCEPTED)
            for role, actor in (("manager", "maria"), ("finance", "fatima"))))
        hold.release.set()
        assert (await first).status == "pending"
        outcomes = await asyncio.wait_for(asyncio.gather(*(w.result() for w in waiting)), timeout=30)
        # The last one stored decides, and says so (the other may have seen all three
        # stored too, or not yet); the two stores may run at once and miss each other.
        assert "approved" in {o.status for o in outcomes}
        await wait_for(lambda: len(stack.mails()) == 2, what="the approved offer sent")
        row, = [a for a in stack.approval_rows() if a.id == offer["id"]]
        assert row.status == "approved"
        assert sorted(r for r, _, _ in _votes(stack, offer["id"])) == ["csm", "finance", "manager"]


async def test_a_reject_while_an_approval_waits_decides_and_the_approval_still_ends(
    stack_factory: Any, three_roles: RegoEngine,
) -> None:
    hold = _Hold("record_vote")  # an approval that decides nothing yet
    async with stack_factory(policy=three_roles, worker_kwargs={"interceptors": [hold]}) as stack:
        handle, offer, first = await _csm_approval_being_stored(stack, hold)
        manager = await handle.start_update("decide", _vote(offer, "manager", "maria"), result_type=ApprovalOutcome,
                                            wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        reject = await handle.execute_update("decide", _vote(offer, "finance", "fatima", "reject"),
                                             result_type=ApprovalOutcome)
        assert reject.status == "rejected"  # a reject decides at once
        # Neither the CSM's approval (being stored) nor the manager's (waiting) is stored.
        assert reject.remaining_roles == ["csm", "manager"]
        hold.release.set()
        await first
        await asyncio.wait_for(manager.result(), timeout=30)  # not left waiting
        with Session(stack.db) as s:
            key = s.exec(select(Approval.run_key).where(Approval.id == offer["id"])).one()
        await wait_for(lambda: _status(stack, key) == "rejected", what="the rejection recorded")
        assert len(stack.mails()) == 1  # the offer was never sent


def _status(stack: Stack, key: str) -> str | None:
    with Session(stack.db) as s:
        return s.exec(select(ActionRecord.status).where(ActionRecord.run_key == key)).one()
