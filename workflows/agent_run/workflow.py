"""AgentRun: one agent's durable run for one account, id `agent:<agent>:<account>`.

Thin by design: the LangGraph graph does the work (its I/O nodes are activities);
this workflow feeds it one playbook stretch at a time, parks it on approvals, delivers
the inbox's votes and edits (as Updates), escalates past each role's SLA and rejects at
the final timeout. At a playbook wait it sleeps on a durable timer and continues as new
with the next stretch (its history stays short however long the playbook runs); the
spec and bundle hashes it pinned go with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.langgraph import graph

from autopilot.runtime.contracts.approval import (
    ApprovalDecision,
    ApprovalEdit,
    ApprovalOutcome,
    ApprovalRequest,
    ApprovalVote,
)
from autopilot.runtime.contracts.run import (
    ActionOutcome,
    AgentRunInput,
    AgentRunResult,
    EventSignal,
    PreemptSignal,
)
from autopilot.runtime.graph.builder import FUSED_GRAPH, GRAPH_NAME, LOCAL_GRAPH, compiled
from autopilot.workflows import search
from autopilot.workflows.agent_run.activities import (
    ApprovalActivities,
    CloseInput,
    EditInput,
    EscalateInput,
)

_ACTIVITY = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=10),
}


@dataclass
class _Item:
    """One open inbox item; `root` is the item the graph asked about (edits replace items)."""

    request: ApprovalRequest
    root: str
    opened: datetime
    votes: dict[str, ApprovalVote] = field(default_factory=dict)  # claimed, maybe not stored
    recorded: set[str] = field(default_factory=set)  # roles whose vote is stored
    storing: set[str] = field(default_factory=set)  # roles whose vote is being stored
    escalated: set[str] = field(default_factory=set)
    busy: bool = False  # an edit is being gated: no votes meanwhile

    def deciders(self, role: str) -> set[str]:
        extra = (
            {self.request.escalate_to[role]}
            if role in self.escalated and role in self.request.escalate_to
            else set()
        )
        return {role} | extra


def _step_status(outcomes: list[ActionOutcome]) -> dict[str, str]:
    """Each step's status: executed if any of its actions executed, else the last one's."""
    done: dict[str, str] = {}
    for o in outcomes:
        if o.step and done.get(o.step) != "executed":
            done[o.step] = o.status
    return done


# Not sandboxed: the sandbox re-imports this module for every run, about 8 ms of a run's
# first workflow task (evals/bench/e2e.py), the largest part of the time before its first
# step. What the sandbox would catch is caught otherwise: the code that runs here is this
# thin class and the graph's routing (pure functions of the state); every I/O step is an
# activity or a local activity; and the golden histories of every agent, replayed in CI
# (tests/runtime/audit/test_golden.py), fail on any non-deterministic command.
@workflow.defn(name="AgentRun", sandboxed=False)
class AgentRunWorkflow:
    def __init__(self) -> None:
        self._items: dict[str, _Item] = {}
        self._answers: dict[str, ApprovalDecision] = {}  # by root item
        self._events: list[EventSignal] = []
        self._status = "running"
        self._outcomes: list[ActionOutcome] = []
        self._wake: datetime | None = None

    @workflow.run
    async def run(self, inp: AgentRunInput) -> AgentRunResult:
        wf_id = workflow.info().workflow_id
        started = inp.started_at or workflow.info().start_time
        # Runs from before the local (then the fused) action path replay on the graph
        # they ran on.
        if workflow.patched("local-action-path"):
            name = LOCAL_GRAPH
        elif workflow.patched("fused-action-path"):
            name = FUSED_GRAPH
        else:
            name = GRAPH_NAME
        app = compiled(graph(name))
        config: RunnableConfig = {"configurable": {"thread_id": wf_id}}
        run = inp.model_dump(mode="json", exclude={"outcomes"})
        state = {
            "run": {**run, "workflow_id": wf_id, "started_at": started.isoformat()},
            "outcomes": [],
        }
        self._outcomes = list(inp.outcomes)
        self._set_status("running")
        result = await app.ainvoke(state, config)
        while "__interrupt__" in result:
            request = ApprovalRequest.model_validate(result["__interrupt__"][0].value)
            self._set_status("waiting_approval")
            answer = await self._await_answer(request)
            self._set_status("running")
            result = await app.ainvoke(Command(resume=answer.model_dump(mode="json")), config)
        # An Update still closing its item (a denied edit) finishes before the run does.
        await workflow.wait_condition(workflow.all_handlers_finished)
        stretch = [ActionOutcome.model_validate(o) for o in result.get("outcomes", [])]
        self._outcomes = [*inp.outcomes, *stretch]
        wait_s, cursor, exit_reason = (
            result.get("wait_s"),
            result.get("next_cursor"),
            result.get("exit"),
        )
        if wait_s and cursor is not None and not exit_reason:
            # A playbook wait: sleep, then the next stretch looks at the account afresh.
            self._wake = workflow.now() + timedelta(seconds=wait_s)
            self._set_status("waiting")
            await workflow.sleep(timedelta(seconds=wait_s))
            workflow.continue_as_new(
                inp.model_copy(
                    update={
                        "cursor": cursor,
                        "stretch": inp.stretch + 1,
                        "started_at": started,
                        "done": {**inp.done, **_step_status(stretch)},
                        "outcomes": self._outcomes,
                    }
                )
            )
        self._set_status(f"exited:{exit_reason}" if exit_reason else "done")
        return AgentRunResult(
            workflow_id=wf_id,
            outcomes=self._outcomes,
            # Events that arrived while this run worked are coalesced into it. A run
            # started by signal-with-start also got its own event as a signal; one
            # started directly (eagerly) did not: count the others either way.
            coalesced_events=len({e.event_id for e in self._events} - {inp.event.event_id}),
            exit=exit_reason,
            stretches=inp.stretch + 1,
        )

    def _set_status(self, status: str) -> None:
        """The run's status, for the `progress` query and (when the run was started with
        search attributes) for filtering in the Temporal UI and CLI."""
        self._status = status
        if workflow.info().typed_search_attributes.get(search.AGENT) is not None:
            workflow.upsert_search_attributes([search.STATUS.value_set(status)])

    @workflow.query(name="progress")
    def progress(self) -> dict[str, object]:
        return {
            "status": self._status,
            "outcomes": [o.model_dump(mode="json") for o in self._outcomes],
            "wake_at": self._wake.isoformat() if self._wake else None,
            "pending": [i.request.approval_id for i in self._items.values()],
        }

    @workflow.signal(name="preempted")
    def preempted(self, signal: PreemptSignal) -> None:
        """The account supervisor gave this action's contact or budget to a higher-priority
        agent: its open item is answered (rejected) so the run moves on; the inbox row is
        already closed."""
        for approval_id, item in list(self._items.items()):
            if item.request.run_key == signal.run_key and item.root not in self._answers:
                self._answers[item.root] = ApprovalDecision(
                    approval_id=item.root,
                    payload_hash=item.request.payload_hash,
                    verdict="reject",
                    actor=f"supervisor:{signal.by}",
                    reason=f"preempted by {signal.by}, which has priority on this account",
                    decided_at=workflow.now(),
                    action=item.request.action if item.request.edited_from else None,
                    decision=item.request.decision if item.request.edited_from else None,
                )
                del self._items[approval_id]

    async def _open(self, request: ApprovalRequest, root: str) -> None:
        self._items[request.approval_id] = _Item(request=request, root=root, opened=workflow.now())
        stopped = await workflow.execute_activity_method(
            ApprovalActivities.open_approval, request, **_ACTIVITY
        )
        if stopped:  # preempted (or blocked) before its item opened: no person is asked
            self.preempted(PreemptSignal(run_key=request.run_key or "", by=str(stopped)))

    async def _await_answer(self, request: ApprovalRequest) -> ApprovalDecision:
        root = request.approval_id
        await self._open(request, root)
        final_at = workflow.now() + timedelta(hours=request.timeout_hours)
        while root not in self._answers:
            current = next(i for i in self._items.values() if i.root == root)
            now = workflow.now()
            due = [
                current.opened + timedelta(hours=h)
                for r, h in current.request.slas.items()
                if r not in current.votes and r not in current.escalated
            ]
            wake = min([final_at, *due])
            try:
                await workflow.wait_condition(
                    lambda: root in self._answers or self._changed(root, current),  # noqa: B023 - awaited here
                    timeout=max(timedelta(0), wake - now),
                )
            except TimeoutError:
                pass
            if root in self._answers:
                break
            if workflow.now() >= final_at:
                await self._expire(root)
            else:
                await self._escalate_due(root)
        return self._answers[root]

    def _changed(self, root: str, seen: _Item) -> bool:
        current = next((i for i in self._items.values() if i.root == root), None)
        return current is not seen

    async def _escalate_due(self, root: str) -> None:
        item = next(i for i in self._items.values() if i.root == root)
        for role, hours in item.request.slas.items():
            if role in item.votes or role in item.escalated:
                continue
            if workflow.now() >= item.opened + timedelta(hours=hours):
                item.escalated.add(role)
                target = item.request.escalate_to.get(role)
                await workflow.execute_activity_method(
                    ApprovalActivities.escalate,
                    EscalateInput(approval_id=item.request.approval_id, role=role, to=target),
                    **_ACTIVITY,
                )

    async def _expire(self, root: str) -> None:
        item = next(i for i in self._items.values() if i.root == root)
        # Not clearly approved in time: rejected (fail closed).
        self._answers[root] = ApprovalDecision(
            approval_id=root,
            payload_hash=item.request.payload_hash,
            verdict="reject",
            actor="system:timeout",
            reason="approval timed out",
            decided_at=workflow.now(),
            action=item.request.action if item.request.edited_from else None,
            decision=item.request.decision if item.request.edited_from else None,
        )
        del self._items[item.request.approval_id]
        await workflow.execute_activity_method(
            ApprovalActivities.close_approval,
            CloseInput(
                approval_id=item.request.approval_id,
                status="expired",
                actor="system:timeout",
                reason="approval timed out",
                at=workflow.now(),
            ),
            **_ACTIVITY,
        )

    @workflow.signal(name="event")
    def event(self, signal: EventSignal) -> None:
        self._events.append(signal)

    # --- votes ----------------------------------------------------------------

    @workflow.update(name="decide")
    async def decide(self, vote: ApprovalVote) -> ApprovalOutcome:
        item = self._items[vote.approval_id]
        vote = vote.model_copy(update={"decided_at": vote.decided_at or workflow.now()})
        # Claimed before awaiting, so a concurrent second vote for the role is refused.
        item.votes[vote.role] = vote
        # The vote that decides the item is not stored while the approver waits: the
        # answer carries it and the step that acts on it (the send, or the record of a
        # rejection) stores it first, about 6 ms sooner at the send (evals/bench/e2e.py).
        # It is durable meanwhile: the Update's arguments are in the history.
        # Runs from before stored every vote here and replay so.
        in_step = workflow.patched("vote-in-step")
        if in_step:
            if vote.verdict == "approve" and item.storing - {vote.role}:
                # Approved only once every other role's approval is stored: one being
                # stored may still fail (and free its role). Waits for those stores to
                # end, not for other waiting votes (with three roles, two approvals may
                # wait at once: then neither decides here, both are stored, and the last
                # stored decides below).
                await workflow.wait_condition(
                    lambda: not item.storing - {vote.role} or item.root in self._answers
                )
            if self._decides(item, vote):
                self._answer(item, vote)
                return self._decided(item, vote)
            record = workflow.execute_local_activity_method
        # A local activity (one row, written by the worker that holds the Update's task):
        # no round trip to the server. Runs from before recorded it as an activity.
        elif workflow.patched("vote-local"):
            record = workflow.execute_local_activity_method
        else:
            record = workflow.execute_activity_method
        item.storing.add(vote.role)
        try:
            outcome = await record(ApprovalActivities.record_vote, vote, **_ACTIVITY)
        except Exception:
            item.votes.pop(vote.role, None)  # not stored: the role may vote again
            raise
        finally:
            item.storing.discard(vote.role)
        item.recorded.add(vote.role)
        # Approved only once every role's approval is stored: a reject still being stored
        # (claimed, in flight) must not be overtaken by the last approval.
        if self._decides(item, vote):
            self._answer(item, vote)
            if in_step:
                # Two roles' stores at once may each have missed the other's vote (and
                # left the item pending): the answer carries this vote, and its next step
                # stores it again, deciding the item.
                return self._decided(item, vote)
        return outcome

    @staticmethod
    def _decided(item: _Item, vote: ApprovalVote) -> ApprovalOutcome:
        stored = item.recorded | {vote.role}
        return ApprovalOutcome(
            approval_id=vote.approval_id,
            status="approved" if vote.verdict == "approve" else "rejected",
            actor=vote.actor,
            remaining_roles=[r for r in item.request.roles if r not in stored],
            decided_at=vote.decided_at,
        )

    def _decides(self, item: _Item, vote: ApprovalVote) -> bool:
        """Whether `vote` decides its item: a reject, or the last approval (every other
        role's stored). Not if the item was answered meanwhile: another role's reject, a
        preemption, the timeout."""
        if item.root in self._answers or self._items.get(vote.approval_id) is not item:
            return False
        return vote.verdict == "reject" or item.recorded | {vote.role} >= set(item.request.roles)

    def _answer(self, item: _Item, vote: ApprovalVote) -> None:
        self._items.pop(vote.approval_id, None)
        edited = item.request.edited_from is not None
        self._answers[item.root] = ApprovalDecision(
            approval_id=item.root,
            payload_hash=item.request.payload_hash,
            verdict=vote.verdict,
            actor=vote.actor,
            reason=vote.reason,
            decided_at=vote.decided_at,
            action=item.request.action if edited else None,
            decision=item.request.decision if edited else None,
            vote=vote,  # stored (again: idempotent) by the step that acts on the answer
        )

    @decide.validator
    def _validate_vote(self, vote: ApprovalVote) -> None:
        item = self._open_item(vote.approval_id, vote.payload_hash)
        if vote.role not in item.request.roles:
            raise ValueError(f"role '{vote.role}' is not asked to approve {vote.approval_id}")
        if vote.role in item.votes:
            raise ValueError(f"role '{vote.role}' already decided {vote.approval_id}")
        if any(v.actor == vote.actor for v in item.votes.values()):
            raise ValueError(
                f"{vote.actor} already decided {vote.approval_id}: a second person must"
            )

    def _open_item(self, approval_id: str, payload_hash: str) -> _Item:
        item = self._items.get(approval_id)
        if item is None:
            raise ValueError(f"approval {approval_id} is not open")
        if item.busy:
            raise ValueError(f"approval {approval_id} is being edited")
        if payload_hash != item.request.payload_hash:
            raise ValueError("stale: the action's payload hash differs")
        return item

    # --- edits ----------------------------------------------------------------

    @workflow.update(name="edit")
    async def edit(self, edit: ApprovalEdit) -> ApprovalOutcome:
        item = self._items[edit.approval_id]
        item.busy = True
        try:
            result = await workflow.execute_activity_method(
                ApprovalActivities.regate_edit,
                EditInput(request=item.request, edit=edit),
                **_ACTIVITY,
            )
        finally:
            item.busy = False
        if self._items.get(edit.approval_id) is not item:
            # The supervisor preempted the action while the edit was gated: nothing to open.
            return ApprovalOutcome(
                approval_id=edit.approval_id, status="superseded", actor=edit.actor
            )
        del self._items[edit.approval_id]
        if result.request is None:  # the edited action is denied: nothing will run, the item closes
            self._answers[item.root] = ApprovalDecision(
                approval_id=item.root,
                payload_hash=result.payload_hash,
                verdict="reject",
                actor=edit.actor,
                reason="the edited action was denied by policy",
                decided_at=workflow.now(),
                action=result.action,
                decision=result.decision,
            )
            # The answer first: the run loop must not find the item gone and no answer.
            if workflow.patched("close-denied-edit"):  # histories from before this keep replaying
                await workflow.execute_activity_method(
                    ApprovalActivities.close_approval,
                    CloseInput(
                        approval_id=edit.approval_id,
                        status="denied",
                        actor=edit.actor,
                        reason="the edited action was denied by policy: " + ", ".join(result.codes),
                        at=workflow.now(),
                    ),
                    **_ACTIVITY,
                )
            return ApprovalOutcome(
                approval_id=edit.approval_id,
                status="superseded",
                actor=edit.actor,
                codes=result.codes,
            )
        await self._open(result.request, item.root)
        return ApprovalOutcome(
            approval_id=edit.approval_id,
            status="superseded",
            actor=edit.actor,
            remaining_roles=result.request.roles,
            new_approval_id=result.request.approval_id,
        )

    @edit.validator
    def _validate_edit(self, edit: ApprovalEdit) -> None:
        # Votes given to the old payload do not carry over: the edited item starts afresh.
        self._open_item(edit.approval_id, edit.payload_hash)

    @workflow.query(name="pending")
    def pending(self) -> list[ApprovalRequest]:
        return [i.request for i in self._items.values()]
