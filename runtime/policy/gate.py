"""The gate: build the policy input for one proposed action, evaluate it (fail closed,
with a timeout), and write the decision log. Used by the graph's gate node, and by
every path that changes an action before it runs (edits are gated again)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session

from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.policy import (
    AccountIn,
    ActionIn,
    ActorIn,
    AgentIn,
    Decision,
    PolicyInput,
    RecipientIn,
)
from autopilot.runtime.ledger.spend import hours_since_contact, ledger
from autopilot.runtime.policy.engine import UNAVAILABLE, decide
from autopilot.runtime.services import Services
from autopilot.runtime.store.actions import PolicyDecisionRecord
from autopilot.runtime.store.db import transaction
from autopilot.tools.registry import ToolError


def policy_input(svc: Services, session: Session, *, action: ProposedAction, account: AccountSnapshot,
                 spec: AgentSpec, actor: ActorIn, now: datetime) -> PolicyInput:
    try:
        tool = svc.tools.get(action.tool)
        kind, significant = tool.kind, tool.significant
    except ToolError:
        kind, significant = "task", True  # unknown tools are judged as strictly as possible
    recipient = None
    to = action.args.get("to")
    contact = next((c for c in account.contacts if c.email == to), None)
    if contact is None and (audience := action.args.get("audience")):  # an in-app message: its audience's contact
        roles = ("champion", "admin", "executive_sponsor", "end_user") if audience == "all" else (audience,)
        contact = next((c for r in roles for c in account.contacts if c.role == r), None)
    if contact is not None:
        recipient = RecipientIn(
            id=contact.id, email=contact.email, role=contact.role, opted_out=contact.opted_out,
            notice_on_record=contact.notice_at is not None,
            local_hour=now.astimezone(ZoneInfo(contact.timezone)).hour,
            hours_since_last_contact=hours_since_contact(session, recipient=contact.email, now=now),
        )
    return PolicyInput(
        action=ActionIn(
            tool=action.tool, kind=kind, category=action.category, args=action.args,  # type: ignore[arg-type]
            discount_pct=action.discount_pct, expected_cost=action.expected_cost, high_touch=action.high_touch,
            hours=action.hours, significant=significant, contract_change=action.contract_change,
            data_region=svc.settings.tool_regions.get(action.tool, "local"), recipient=recipient,
        ),
        account=AccountIn(id=account.id, segment=account.segment, region=account.region, arr=account.arr,
                          annual_cost_to_serve=account.annual_cost_to_serve, p1_open=account.p1_open),
        agent=AgentIn(name=spec.name, tools=spec.tools),
        actor=actor,
        ledger=ledger(session, account_id=account.id, segment=account.segment, now=now),
    )


async def evaluate(svc: Services, inp: PolicyInput, *, pinned_bundle: str | None) -> tuple[Decision, float]:
    """Decide within the timeout; returns (decision, latency in ms). A timeout is a deny."""
    started = time.perf_counter()
    try:
        decision = await asyncio.wait_for(
            asyncio.to_thread(decide, svc.policy, inp, pinned_bundle=pinned_bundle), timeout=svc.policy_timeout_s)
    except TimeoutError:
        decision = Decision.fail_closed(UNAVAILABLE, f"policy evaluation took over {svc.policy_timeout_s}s")
    return decision, (time.perf_counter() - started) * 1000


async def gate_action(svc: Services, *, run_key: str, action: ProposedAction, account: AccountSnapshot,
                      spec: AgentSpec, actor: ActorIn, pinned_bundle: str | None) -> Decision:
    now = svc.clock()
    with transaction(svc.db) as session:
        inp = policy_input(svc, session, action=action, account=account, spec=spec, actor=actor, now=now)
    decision, latency_ms = await evaluate(svc, inp, pinned_bundle=pinned_bundle)
    log_decision(svc, run_key=run_key, agent=spec.name, account_id=account.id, payload=inp,
                 decision=decision, latency_ms=latency_ms, now=now)
    return decision


def log_decision(svc: Services, *, run_key: str, agent: str, account_id: str, payload: PolicyInput | None,
                 decision: Decision, latency_ms: float, now: datetime) -> None:
    with transaction(svc.db) as session:
        session.add(PolicyDecisionRecord(
            run_key=run_key, account_id=account_id, agent=agent,
            input=payload.model_dump(mode="json") if payload else {},
            input_hash=decision.input_hash, bundle_hash=decision.bundle_hash,
            result=decision.model_dump(mode="json"), outcome=decision.outcome,
            # Space-padded so that a query by code matches whole codes only.
            codes=f" {' '.join(sorted({v.code for v in decision.deny}))} ",
            latency_ms=latency_ms, decided_at=now,
        ))
