"""The gate: build the policy input for one proposed action, evaluate it (fail closed,
with a timeout), and write the decision log. Used by the graph's gate node, and by
every path that changes an action before it runs (edits are gated again)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col
from temporalio import activity
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from autopilot.runtime.agents import supervisor
from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.policy import (
    AccountIn,
    ActionIn,
    ActionKind,
    ActorIn,
    AgentIn,
    Decision,
    PolicyInput,
    RecipientIn,
)
from autopilot.runtime.contracts.run import PreemptSignal
from autopilot.runtime.ledger.spend import Excluded, agent_spend, hours_since_contact, ledger
from autopilot.runtime.planning import checks as planned
from autopilot.runtime.policy.engine import UNAVAILABLE, decide
from autopilot.runtime.services import Services
from autopilot.runtime.store.accounts import Contact
from autopilot.runtime.store.actions import ActionRecord, LedgerVersion, PolicyDecisionRecord
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.users import User
from autopilot.tools.registry import ToolError


def policy_input(
    svc: Services,
    session: Session,
    *,
    action: ProposedAction,
    account: AccountSnapshot,
    spec: AgentSpec,
    actor: ActorIn,
    now: datetime,
    exclude_key: Excluded = None,
) -> PolicyInput:
    try:
        tool = svc.tools.get(action.tool)
        kind, significant = tool.kind, tool.significant
    except ToolError:
        kind, significant = "task", True  # unknown tools are judged as strictly as possible
    recipient = None
    to = action.args.get("to")
    contact = next((c for c in account.contacts if c.email == to), None)
    if contact is None and (
        audience := action.args.get("audience")
    ):  # an in-app message: its audience's contact
        roles = (
            ("champion", "admin", "executive_sponsor", "end_user")
            if audience == "all"
            else (audience,)
        )
        contact = next((c for r in roles for c in account.contacts if c.role == r), None)
    if contact is not None:
        # The customer's choices as they stand now, not as the run's snapshot saw them:
        # an unsubscribe or ADMT opt-out binds from the moment it is recorded.
        live = session.get(Contact, contact.id)
        recipient = RecipientIn(
            id=contact.id,
            email=contact.email,
            role=contact.role,
            opted_out=live.opted_out if live is not None else contact.opted_out,
            admt_opted_out=live is not None and live.admt_opted_out,
            notice_on_record=contact.notice_at is not None,
            local_hour=now.astimezone(ZoneInfo(contact.timezone)).hour,
            hours_since_last_contact=hours_since_contact(
                session,
                account_id=account.id,
                recipient=contact.email,
                now=now,
                exclude_key=exclude_key,
            ),
        )
    return PolicyInput(
        action=ActionIn(
            tool=action.tool,
            kind=cast(ActionKind, kind),
            category=action.category,
            args=action.args,  # type: ignore[arg-type]
            discount_pct=action.discount_pct,
            expected_cost=action.expected_cost,
            high_touch=action.high_touch,
            hours=action.hours,
            significant=significant,
            contract_change=action.contract_change,
            data_region=svc.settings.tool_regions.get(action.tool, "local"),
            recipient=recipient,
        ),
        account=AccountIn(
            id=account.id,
            segment=account.segment,
            region=account.region,
            arr=account.arr,
            annual_cost_to_serve=account.annual_cost_to_serve,
            p1_open=account.p1_open,
        ),
        agent=AgentIn(name=spec.name, tools=spec.tools),
        actor=actor,
        ledger=ledger(
            session,
            account_id=account.id,
            segment=account.segment,
            now=now,
            exclude_key=exclude_key,
        ),
    )


async def evaluate(
    svc: Services, inp: PolicyInput, *, pinned_bundle: str | None
) -> tuple[Decision, float]:
    """Decide within the timeout; returns (decision, latency in ms). A timeout is a deny."""
    started = time.perf_counter()
    try:
        decision = await asyncio.wait_for(
            asyncio.to_thread(decide, svc.policy, inp, pinned_bundle=pinned_bundle),
            timeout=svc.policy_timeout_s,
        )
    except TimeoutError:
        decision = Decision.fail_closed(
            UNAVAILABLE, f"policy evaluation took over {svc.policy_timeout_s}s"
        )
    return decision, (time.perf_counter() - started) * 1000


@dataclass(frozen=True)
class Reservation:
    """The action's row in the ledger (its run key): written with the decision in the
    same transaction as the ledger version check, so what the gate counted is still
    true when the reservation lands."""

    key: str
    workflow_id: str
    agent: str


ATTEMPTS = 20
log = logging.getLogger(__name__)


class LedgerContended(RuntimeError):
    """Busy, not denied: the gate could not land its reservation; retried by the caller."""


async def gate_action(
    svc: Services,
    *,
    run_key: str,
    action: ProposedAction,
    account: AccountSnapshot,
    spec: AgentSpec,
    actor: ActorIn,
    pinned_bundle: str | None,
    reserve: Reservation | None = None,
) -> Decision:
    """Decide one action. With `reserve`, an allowed or approval-bound action reserves
    its cost, contact and discount in the ledger; if another gate reserved from the same
    budget meanwhile, the decision is taken again on the new ledger (optimistic, so the
    policy engine never runs under a lock)."""
    scope = account.segment
    key = reserve.key if reserve else run_key
    priorities = {name: s.priority for name, s in svc.specs.items()}
    for attempt in range(ATTEMPTS):
        now = svc.clock()
        mine = [reserve.key] if reserve else []
        with transaction(svc.db) as session:
            version = _version(session, scope)
            others = supervisor.contenders(
                session,
                account_id=account.id,
                key=key,
                agent=spec.name,
                now=now,
                priorities=priorities,
            )
            inp = policy_input(
                svc,
                session,
                action=action,
                account=account,
                spec=spec,
                actor=actor,
                now=now,
                exclude_key=mine,
            )
            spent = agent_spend(
                session, account_id=account.id, agent=spec.name, now=now, exclude_key=mine
            )
            owner = session.get(User, account.owner_csm)
            csm_email = owner.email if owner is not None else ""
            # Lower-priority actions not yet executing may give way; one being sent may not.
            lower = [
                c
                for c in others
                if c.priority < spec.priority and c.status in ("allowed", "pending")
            ]
            bare = None
            if lower:  # what the decision would be if the lower-priority reservations gave way
                bare = policy_input(
                    svc,
                    session,
                    action=action,
                    account=account,
                    spec=spec,
                    actor=actor,
                    now=now,
                    exclude_key=mine + [c.key for c in lower],
                )
        decision, latency_ms = await evaluate(svc, inp, pinned_bundle=pinned_bundle)
        decision = supervisor.tighten(decision, spec=spec, action=action, agent_spent=spent)
        decision = planned.tighten(
            decision, action=action, account=account, today=now.date(), csm_email=csm_email
        )
        preempt: list[supervisor.Contender] = []
        if not decision.allow and bare is not None and supervisor.yields_to_priority(decision):
            # The account supervisor: the higher priority takes what the lower-priority
            # actions in flight hold; all of them give way (every cap then holds).
            second, more_ms = await evaluate(svc, bare, pinned_bundle=pinned_bundle)
            second = supervisor.tighten(second, spec=spec, action=action, agent_spent=spent)
            second = planned.tighten(
                second, action=action, account=account, today=now.date(), csm_email=csm_email
            )
            latency_ms += more_ms
            if second.allow:
                decision, inp, preempt = second, bare, lower
        decision = supervisor.settle(
            decision, action=action, spec=spec, others=others, preempt=preempt
        )
        logged = _decision_row(
            run_key=run_key,
            agent=spec.name,
            account_id=account.id,
            payload=inp,
            decision=decision,
            latency_ms=latency_ms,
            now=now,
        )
        if reserve is None or _commit(
            svc, scope, version, reserve, action, account, decision, now, preempt, logged
        ):
            break
        # Another gate reserved from this budget meanwhile: decide again on the new ledger,
        # after a short random wait so that racing gates spread out.
        await asyncio.sleep(random.uniform(0, 0.005 * 2 ** min(attempt, 6)))
    else:
        # Not a policy answer: the activity retries (with Temporal's back-off) until it lands.
        raise LedgerContended(
            f"the {scope} ledger changed under {ATTEMPTS} attempts to gate {run_key}"
        )
    if reserve is not None and preempt:
        await _tell_preempted(preempt, by=spec.name)
    if reserve is None:  # with a reservation, the log went in with it (`_commit`)
        with transaction(svc.db) as session:
            session.add(logged)
    return decision


STATUS = {"allow": "allowed", "require_approval": "pending", "deny": "denied"}


async def _tell_preempted(preempt: list[supervisor.Contender], *, by: str) -> None:
    """Wake the runs whose actions were preempted (their items are closed already; a
    run not told still cannot execute a preempted action, and times out its item)."""
    if not activity.in_activity():
        return
    client = activity.client()
    for c in preempt:
        try:
            await client.get_workflow_handle(c.workflow_id).signal(
                "preempted", PreemptSignal(run_key=c.key, by=by)
            )
        except (RPCError, TemporalError) as err:
            log.warning("could not tell %s it was preempted: %s", c.workflow_id, err)


_BUMP = (  # built once: every reservation bumps its scope's version
    update(LedgerVersion)
    .where(
        col(LedgerVersion.scope) == bindparam("b_scope"),
        col(LedgerVersion.version) == bindparam("b_version"),
    )
    .values(version=bindparam("b_next"))
)


def _version(session: Session, scope: str) -> int:
    row = session.get(LedgerVersion, scope)
    return row.version if row else 0


def _commit(
    svc: Services,
    scope: str,
    version: int | None,
    reserve: Reservation,
    action: ProposedAction,
    account: AccountSnapshot,
    decision: Decision,
    now: datetime,
    preempt: list[supervisor.Contender] | None = None,
    logged: PolicyDecisionRecord | None = None,
) -> bool:
    """Write the action's ledger row; a reservation only if the scope's version is still
    `version` (None: no reservation, the row records a denial). False: lost the race.
    `logged`, the decision log's row, is written in the same transaction (one commit)."""
    try:
        with transaction(svc.db) as session:
            if decision.outcome != "deny" and version is not None:
                bumped = (
                    session.connection()
                    .execute(_BUMP, {"b_scope": scope, "b_version": version, "b_next": version + 1})
                    .rowcount
                )
                if not bumped:
                    if version != 0 or session.get(LedgerVersion, scope) is not None:
                        session.rollback()
                        return False
                    session.add(
                        LedgerVersion(scope=scope, version=1)
                    )  # first reservation of the scope
            if logged is not None:
                session.add(logged)
            status = STATUS[decision.outcome]
            record = session.get(ActionRecord, reserve.key) or ActionRecord(
                run_key=reserve.key,
                workflow_id=reserve.workflow_id,
                agent=reserve.agent,
                account_id=account.id,
                segment=account.segment,
                tool=action.tool,
                payload={},
                payload_hash="",
                status=status,
                created_at=now,
                updated_at=now,
            )
            if record.status in ("preempted", "blocked"):
                return True  # the supervisor or compliance stopped it: it stays stopped
            record.take(action)
            record.status, record.updated_at = status, now
            record.needed_approval = record.needed_approval or decision.require_approval
            session.add(record)
            if not supervisor.record(
                session,
                decision=decision,
                account_id=account.id,
                agent=reserve.agent,
                key=reserve.key,
                preempt=preempt or [],
                now=now,
            ):
                session.rollback()  # a preempted action moved on meanwhile: decide again
                return False
    except IntegrityError:  # two first reservations of a scope at once: one wins, the other retries
        return False
    return True


def _decision_row(
    *,
    run_key: str,
    agent: str,
    account_id: str,
    payload: PolicyInput | None,
    decision: Decision,
    latency_ms: float,
    now: datetime,
) -> PolicyDecisionRecord:
    return PolicyDecisionRecord(
        run_key=run_key,
        account_id=account_id,
        agent=agent,
        input=payload.model_dump(mode="json") if payload else {},
        input_hash=decision.input_hash,
        bundle_hash=decision.bundle_hash,
        result=decision.model_dump(mode="json"),
        outcome=decision.outcome,
        # Space-padded so that a query by code matches whole codes only.
        codes=f" {' '.join(sorted({v.code for v in decision.deny}))} ",
        latency_ms=latency_ms,
        decided_at=now,
    )
