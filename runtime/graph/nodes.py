"""The agent graph's nodes. Nodes that do I/O run as activities and reach their
clients through the worker's Services; `assess` and `approve` only decide and run
in the workflow (the interrupt must be raised there)."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from langgraph.types import interrupt
from sqlalchemy import bindparam, or_, update
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autopilot.runtime import services
from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.agents import playbook
from autopilot.runtime.agents.playbook import RunFacts
from autopilot.runtime.agents.specs import spec_hash
from autopilot.runtime.agents.supervisor import PREEMPTED
from autopilot.runtime.approvals.votes import NoApproval, store_vote
from autopilot.runtime.contracts.account import Assessment
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.approval import ApprovalDecision
from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.contracts.policy import ActorIn, Decision
from autopilot.runtime.contracts.run import ActionOutcome
from autopilot.runtime.contracts.tool import ToolCall
from autopilot.runtime.execution.executor import call_state, execute_once
from autopilot.runtime.execution.outcomes import open_check
from autopilot.runtime.graph.requests import approval_id_for, approval_request
from autopilot.runtime.graph.state import RunState, View
from autopilot.runtime.ledger.cbr import book_action_cost
from autopilot.runtime.ledger.spend import agent_spend, quarter_limits
from autopilot.runtime.observability import metrics
from autopilot.runtime.observability.nodes import traced_node
from autopilot.runtime.observability.tracing import set_attrs, span
from autopilot.runtime.optimizer.solver import Limits
from autopilot.runtime.optimizer.uplift import learned_uplift
from autopilot.runtime.planning import stretch as planning
from autopilot.runtime.policy.engine import PolicyLoadError
from autopilot.runtime.policy.gate import Reservation, gate_action
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.store import audit
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.actions import ActionRecord, AttributedRevenue
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.events import Event
from autopilot.runtime.store.users import User
from autopilot.tools.registry import ToolError, ToolOutcomeUnknown, ToolUnavailable

log = logging.getLogger(__name__)

# --- activities --------------------------------------------------------------


@traced_node
def observe(state: RunState) -> dict[str, Any]:
    svc = services.current()
    run = View(state).run
    with transaction(svc.db) as session:
        snapshot = get_snapshot(session, account_id=run.account_id, today=svc.clock().date())
    if snapshot is None:
        raise ApplicationError(f"unknown account {run.account_id}", non_retryable=True)
    return {"account": snapshot.model_dump(mode="json")}


@traced_node
def plan(state: RunState) -> dict[str, Any]:
    """The playbook's next stretch for this account: exit criteria, step conditions,
    options priced from the catalogue and chosen by the optimizer within what the
    account has left, arguments rendered from the agent's templates."""
    svc = services.current()
    v = View(state)
    run = v.run
    spec = svc.specs[run.agent]
    now = svc.clock()
    started = run.started_at or now
    since = now - timedelta(days=spec.limits.rejection_cooldown_days)
    with transaction(svc.db) as session:
        conn = session.connection()
        params = {"account_id": v.account.id, "agent": spec.name, "since": since}
        rejected = {tool: why or "" for tool, why in conn.execute(_REJECTED, params)}
        events = list(
            conn.execute(_EVENTS, {"account_id": v.account.id, "since": started}).scalars()
        )
        account = session.get(Account, v.account.id)
        assert account is not None  # observe found it
        room, learned = _room(svc, session, spec, account, now)
        owner = session.get(User, account.owner_csm)
        trigger = session.get(Event, run.event.event_id)
        event = {**(trigger.payload if trigger else {}), "type": run.event.type}
    facts = RunFacts(started=started.date(), events=events, done=run.done, stretch=run.stretch)
    attempt = activity.info() if activity.in_activity() else None
    stretch = planning.plan_stretch(
        svc,
        spec,
        v.account,
        v.assessment,
        facts,
        now,
        # One planning's model calls, booked once: the attempt is part of the key, since
        # a retried activity asks the model again (and pays again).
        call_key=f"llm:{run.workflow_id}:{attempt.activity_id}:{attempt.attempt}"
        if attempt
        else f"llm:{run.workflow_id}:{run.cursor}",
        since=started,
        cursor=run.cursor,
        event=event,
        room=room,
        rejected=rejected,
        learned=learned,
        csm={
            "id": account.owner_csm,
            "name": owner.name if owner else account.owner_csm,
            "email": owner.email if owner else "",
        },
        tool_fields=lambda tool: set(svc.tools.get(tool).args_model.model_fields),
    )
    if stretch.exit == "goal_met" and spec.goal.metric == "expansion_answered":
        _attribute(svc, spec.name, run.workflow_id, v.account.id, started, now)
    return {
        "actions": [a.model_dump(mode="json") for a in stretch.actions],
        "rejected": rejected,
        "limits": spec.limits.model_dump(mode="json"),
        "index": 0,
        "notes": [n.model_dump(mode="json") for n in stretch.notes],
        "events": events,
        "exit": stretch.exit,
        "next_cursor": stretch.next_cursor,
        "wait_s": stretch.wait_s * svc.settings.playbook_wait_scale if stretch.wait_s else None,
    }


def _attribute(
    svc: services.Services,
    agent: str,
    workflow_id: str,
    account_id: str,
    started: datetime,
    now: datetime,
) -> None:
    """The expansion the run was for arrived: its ARR is credited to the agent (once per
    `expanded` event; a retried activity finds the credit there)."""
    with transaction(svc.db) as session:
        for event in session.exec(
            select(Event).where(
                Event.account_id == account_id,
                Event.type == "expanded",
                Event.received_at >= started,
            )
        ):
            assert event.id is not None
            if session.get(AttributedRevenue, event.id) is None:
                session.add(
                    AttributedRevenue(
                        event_id=event.id,
                        account_id=account_id,
                        agent=agent,
                        workflow_id=workflow_id,
                        amount=float(event.payload.get("amount", 0.0)),
                        at=now,
                    )
                )


def _room(
    svc: services.Services, session: Session, spec: AgentSpec, account: Account, now: datetime
) -> tuple[playbook.Room, dict[str, tuple[float, int]]]:
    """What the account has left for this agent (the optimizer's limits), and the
    uplift learned from this organisation's outcomes (retention goals)."""
    max_hours = 1e9
    try:
        limits = read_limits(svc.policy)
        left = quarter_limits(session, account, limits, now=now)
        max_hours = limits.contact.high_touch_max_hours
    except PolicyLoadError:
        # No limits to read: plan without them; the gate, on the same engine, denies.
        left = Limits(budget=float("inf"), high_touch_left=99, contacts_left=99)
    budget = left.budget
    if spec.limits.budget_per_account is not None:
        spent = agent_spend(session, account_id=account.id, agent=spec.name, now=now)
        budget = min(budget, spec.limits.budget_per_account - spent)
    opted_out = session.exec(
        select(Contact.email).where(Contact.account_id == account.id, col(Contact.opted_out))
    ).all()
    learned = learned_uplift(session, account) if spec.goal.metric == "renewal_probability" else {}
    room = playbook.Room(
        budget=max(0.0, budget),
        high_touch_left=left.high_touch_left,
        contacts_left=left.contacts_left,
        blocked_recipients=list(opted_out),
        max_hours=max_hours,
    )
    return room, learned


@traced_node
async def gate(state: RunState) -> dict[str, Any]:
    svc = services.current()
    v = View(state)
    run = v.run
    spec = svc.specs.get(run.agent)
    started = time.perf_counter()
    with span("policy.gate", tool=v.action.tool, run_key=v.key) as current:
        if spec is None or spec_hash(spec) != run.spec_hash:
            decision = Decision.fail_closed(
                "policy.spec_mismatch", "the run pinned an agent spec this worker does not hold"
            )
        else:
            decision = await gate_action(
                svc,
                run_key=v.key,
                action=v.action,
                account=v.account,
                spec=spec,
                actor=ActorIn(type="agent", id=run.agent),
                pinned_bundle=run.bundle_hash,
                reserve=Reservation(key=v.key, workflow_id=run.workflow_id, agent=run.agent),
            )
        codes = _codes(decision)
        set_attrs(
            current,
            **{
                "policy.bundle_hash": decision.bundle_hash,
                "policy.outcome": decision.outcome,
                "policy.codes": codes,
                "policy.approval_roles": decision.roles,
            },
        )
    metrics.decided(run.agent, decision.outcome, codes, time.perf_counter() - started)
    return {"decision": decision.model_dump(mode="json"), "approval": None, "result": None}


def _codes(decision: Decision) -> list[str]:
    return sorted({d.code for d in decision.deny})


@traced_node
async def execute(state: RunState) -> dict[str, Any]:
    """Run the action's tool once. A send that is known not to have happened (the server
    down, "try later") is retried by Temporal with back-off for `send_retry_hours`; each
    retry first checks that the approval is still valid and, after a policy change, that
    the policy in force still allows it. An unknown outcome is never retried blindly."""
    svc = services.current()
    v = View(state)
    spec = svc.specs[v.run.agent]
    retry = activity.in_activity() and activity.info().attempt > 1
    if retry and (stop := await _still_allowed(svc, v, spec)) is not None:
        return stop
    with transaction(svc.db) as session:
        # Claim the action before the side effect: a supervisor that preempts it (or
        # compliance that blocks it) after this sees it executing and decides again.
        claimed = session.connection().execute(_CLAIM, {"key": v.key, "at": svc.clock()}).rowcount
        # Then the vote (the action's row locked before its inbox item's, as the
        # supervisor's preemption locks them: no deadlock between the two).
        _store_vote(session, v)
        if not claimed:
            row = session.get(ActionRecord, v.key)
            if row is not None and row.status in (PREEMPTED, "blocked"):
                # A higher-priority agent took its contact or budget (or compliance
                # blocked it) after the gate: nothing is sent.
                return {
                    "result": {
                        "status": "failed",
                        "code": f"supervisor.{row.status}",
                        "error": row.rejection_reason or row.status,
                    }
                }
    call = ToolCall(
        tool=v.action.tool, args=v.action.args, idempotency_key=v.key, granted=spec.tools
    )
    try:
        limits = read_limits(svc.policy)
    except PolicyLoadError:  # the gate has decided; a tool reading limits sees none
        limits = None
    try:  # the tool blocks (SMTP, HTTP): off the worker's event loop
        result = await asyncio.to_thread(
            execute_once, svc.db, svc.tools, call, svc.smtp, svc.settings, limits
        )
    except ToolUnavailable as err:
        return _retry_or_give_up(svc, v.key, err)
    except ToolOutcomeUnknown as err:
        if _dedup(svc, call.tool):  # the receiver de-duplicates by key: ask it again
            return _retry_or_give_up(svc, v.key, err)
        return {"result": {"status": "unknown", "code": err.code, "error": str(err)[:500]}}
    except ToolError as err:
        return {"result": {"status": "failed", "code": err.code, "error": str(err)[:500]}}
    return {"result": result.model_dump(mode="json")}


_AR: Any = ActionRecord.__table__.c  # pyright: ignore[reportAttributeAccessIssue]
_EV: Any = Event.__table__.c  # pyright: ignore[reportAttributeAccessIssue]
# Built once (the planner's reads): the actions a person rejected lately, in order,
# and the account's events since the run began.
_REJECTED = (
    select(_AR.tool, _AR.rejection_reason)
    .where(
        _AR.account_id == bindparam("account_id"),
        _AR.agent == bindparam("agent"),
        _AR.status == "rejected",
        _AR.updated_at >= bindparam("since"),
    )
    .order_by(_AR.updated_at, _AR.run_key)
)
_EVENTS = (
    select(_EV.type)
    .where(_EV.account_id == bindparam("account_id"), _EV.received_at >= bindparam("since"))
    .order_by(_EV.id)
)
_CLAIM = (  # built once: every action is claimed
    update(ActionRecord)
    .where(
        _AR.run_key == bindparam("key"),
        or_(*(_AR.status == s for s in ("allowed", "pending", "executing"))),
    )
    .values(status="executing", updated_at=bindparam("at", type_=_AR.updated_at.type))
)


def _store_vote(session: Session, v: View) -> None:
    """The vote that decided the approval, carried by the answer (ApprovalDecision.vote):
    stored by the first step that acts on it; a retry, or the record after the send,
    finds it there and changes nothing."""
    vote = v.approval.vote if v.approval is not None else None
    if vote is None:
        return
    session.flush()  # the session's pending writes (the action's row) first
    try:
        store_vote(session.connection(), vote)
    except NoApproval:  # the item is gone from the inbox: the run's audit keeps the vote
        log.warning("vote on %s not stored: no such approval", vote.approval_id)


def _dedup(svc: services.Services, tool: str) -> bool:
    try:
        return svc.tools.get(tool).dedup_by_key
    except ToolError:
        return False


def _retry_or_give_up(svc: services.Services, key: str, err: ToolError) -> dict[str, Any]:
    """Raise for Temporal to retry with back-off, while the send is young enough; then
    end it: known not sent, or (if any attempt may have landed) unknown."""
    row = call_state(svc.db, key)
    now = datetime.now(UTC)  # the executor stamps attempts in real time, so must this
    first = row.started_at if row is not None else now
    first = first if first.tzinfo else first.replace(tzinfo=UTC)
    waited_h = (now - first).total_seconds() / 3600
    if waited_h < svc.settings.send_retry_hours:
        raise ApplicationError(str(err)[:500], type=err.code)
    status = "unknown" if row is not None and row.status == "unknown" else "failed"
    return {
        "result": {
            "status": status,
            "code": err.code,
            "error": f"gave up after {waited_h:.1f} h: {str(err)[:400]}",
        }
    }


async def _still_allowed(svc: services.Services, v: View, spec: AgentSpec) -> dict[str, Any] | None:
    """Before a retried send: None to go on, or the update that ends the action unsent."""
    state = call_state(svc.db, v.key)
    if state is not None and state.status in ("done", "unknown", "reconciling"):
        return None  # nothing to decide again: replay, or reconcile with the receiver
    approval = v.approval
    now = datetime.now(UTC)  # approvals are stamped with the workflow's (real) time
    if approval is not None and approval.decided_at is not None:
        decided = approval.decided_at
        decided = decided if decided.tzinfo else decided.replace(tzinfo=UTC)
        if now - decided > timedelta(hours=svc.settings.approval_valid_hours):
            return {
                "result": {
                    "status": "failed",
                    "code": "approval.lapsed",
                    "error": f"approved {decided.isoformat()}; not sent within "
                    f"{svc.settings.approval_valid_hours:g} h",
                }
            }
    if svc.policy.bundle_hash == v.decision.bundle_hash:
        return None
    # The policy changed while the send waited: it goes only if the policy in force
    # allows it now, and asks for no approval beyond the one it has.
    decision = await gate_action(
        svc,
        run_key=f"{v.key}/regate/{svc.policy.bundle_hash[:12]}",
        action=v.action,
        account=v.account,
        spec=spec,
        actor=ActorIn(type="agent", id=v.run.agent),
        pinned_bundle=None,
        reserve=Reservation(key=v.key, workflow_id=v.run.workflow_id, agent=v.run.agent),
    )
    had = set(v.decision.roles) if approval is not None else set()
    if decision.allow and set(decision.roles) <= had:
        return None
    return {
        "decision": decision.model_dump(mode="json"),
        "result": {
            "status": "failed",
            "code": "policy.changed",
            "error": "the policy changed while the send waited and no longer lets it run"
            + (" without a new approval" if decision.allow else ""),
        },
    }


def _status(
    decision: Decision, approval: ApprovalDecision | None, result: dict[str, Any] | None
) -> str:
    if not decision.allow:
        return "denied"
    if approval is not None and approval.verdict != "approve":
        return "rejected"
    if result is not None and result.get("code") in ("supervisor.preempted", "supervisor.blocked"):
        return str(result["code"]).removeprefix("supervisor.")
    if result is None or result.get("status") == "failed":
        return "failed"
    if result.get("status") == "unknown":
        return "unknown"
    return "executed"


@traced_node
def record(state: RunState) -> dict[str, Any]:
    """Write the action's audit steps (one hash-chained entry each) and its final status."""
    svc = services.current()
    v = View(state)
    run, decision, approval, result = v.run, v.decision, v.approval, v.result
    final = v.action  # the edited one, if an approver edited it
    action = final.model_dump(mode="json")
    status = _status(decision, approval, result)
    agent_actor = f"agent:{run.agent}"
    common = {
        "workflow_id": run.workflow_id,
        "run_key": v.key,
        "bundle_hash": decision.bundle_hash or run.bundle_hash,
        "spec_hash": run.spec_hash,
        "org_id": audit.org_of(svc.db, run.account_id),  # the organisation's own chain
    }
    assessment = v.assessment.model_dump(mode="json")
    steps = [
        AuditEvent(
            step="plan",
            actor=agent_actor,
            input_hash=sha256_hex(assessment),
            decision={"action": action, "assessment": assessment, "notes": state.get("notes", [])},
            **common,
        ),
        AuditEvent(
            step="gate",
            actor="policy",
            input_hash=decision.input_hash,
            decision=decision.model_dump(mode="json", exclude={"bundle_hash", "input_hash"}),
            **common,
        ),
    ]
    if approval is not None:
        steps.append(
            AuditEvent(
                step="approve",
                actor=approval.actor,
                input_hash=approval.payload_hash,
                decision=approval.model_dump(mode="json", exclude={"vote"}),
                **common,
            )
        )
    if result is not None:
        steps.append(
            AuditEvent(
                step="execute",
                actor=agent_actor,
                input_hash=sha256_hex(final.args),
                decision=result,
                **common,
            )
        )
    steps.append(
        AuditEvent(
            step="record",
            actor=agent_actor,
            input_hash=sha256_hex(action),
            decision={"status": status},
            **common,
        )
    )
    # The audit steps and the action's final status in one transaction: the status is
    # never written without its entries, nor the entries without the status.
    with transaction(svc.db) as session:
        audit.lock_chains(session, {common["org_id"]})  # first: it begins the transaction
        audit.append_locked(session, steps)
        row = session.get(ActionRecord, v.key)
        if row is not None:
            if row.status == PREEMPTED and status == "rejected":
                status = PREEMPTED  # the supervisor closed its item: not a person's rejection
            row.status, row.updated_at = status, svc.clock()
            row.take(final)
            if approval is not None and status == "rejected":
                row.rejection_reason = approval.reason or None
            session.add(row)
            if status == "executed":  # the cost ledger: booked once per action (unique key)
                book_action_cost(session, row, at=svc.clock(), org_id=common["org_id"])
            if status == "unknown":  # never silent: a person checks (or the receiver answers)
                open_check(
                    session, row, error=str((result or {}).get("error", "")), now=svc.clock()
                )
        # A rejection's vote (an approval's was stored by the send), after the action's
        # row: the order the supervisor's preemption locks them in.
        _store_vote(session, v)
    outcome = ActionOutcome(
        index=v.index,
        tool=final.tool,
        step=final.step,
        status=status,
        codes=[d.code for d in decision.deny]
        + ([result["code"]] if result and "code" in result else []),
        approval_id=approval.approval_id if approval else None,
        output=result.get("output", {}) if result else {},
    )
    return {
        "outcomes": [outcome.model_dump(mode="json")],
        "index": v.index + 1,
        "decision": None,
        "approval": None,
        "result": None,
    }


# --- workflow-side nodes -------------------------------------------------------


@traced_node
def assess(state: RunState) -> dict[str, Any]:
    account = View(state).account
    assessment = Assessment(
        health=account.health, risk=account.churn_risk, reasons=account.health_reasons
    )
    return {"assessment": assessment.model_dump(mode="json")}


@traced_node
def approve(state: RunState) -> dict[str, Any]:
    """Pause for a human. Everything above `interrupt` re-runs on resume: keep it pure."""
    v = View(state)
    run = v.run
    request = approval_request(
        approval_id=approval_id_for(v.key),
        workflow_id=run.workflow_id,
        agent=run.agent,
        account_id=run.account_id,
        bundle_hash=run.bundle_hash,
        spec_hash=run.spec_hash,
        action=v.action,
        decision=v.decision,
        risk=v.assessment.risk,
        timeout_hours=v.limits.approval_timeout_hours,
        run_key=v.key,
    )
    answer = ApprovalDecision.model_validate(interrupt(request.model_dump(mode="json")))
    update: dict[str, Any] = {}
    if answer.action is not None and answer.decision is not None:
        # The approver edited the action: from here on the edited one (gated again) is the action.
        edited = ProposedAction.model_validate(answer.action)
        if edited.payload_hash == answer.payload_hash:
            actions = [a.model_dump(mode="json") for a in v.actions]
            actions[v.index] = edited.model_dump(mode="json")
            update = {"actions": actions, "decision": answer.decision}
    if answer.approval_id != request.approval_id or (
        not update and answer.payload_hash != request.payload_hash
    ):
        # Not an answer to this exact action: fail closed.
        answer = ApprovalDecision(
            approval_id=request.approval_id,
            payload_hash=request.payload_hash,
            verdict="reject",
            actor="system",
            reason="answer did not match the action",
            vote=answer.vote,  # the approver's vote is stored all the same
        )
        update = {}
    return {"approval": answer.model_dump(mode="json"), **update}


# --- routing (async: a sync router would run in a thread pool, which workflows forbid) ---


async def choose(state: RunState) -> str:
    """Next action, cheapest first (the planner sorted them), or the end of the run."""
    v = View(state)
    return "gate" if v.index < len(v.actions) else "__end__"


async def after_gate(state: RunState) -> str:
    return {"allow": "execute", "require_approval": "approve", "deny": "record"}[
        View(state).decision.outcome
    ]


async def after_approve(state: RunState) -> str:
    approval = View(state).approval
    return "execute" if approval is not None and approval.verdict == "approve" else "record"
