"""The plan node's choice of planner: the playbook as written (offline, the default), or
the agent's model (`planner: {kind: llm, ...}`) over the same playbook, grants and
optimizer — the gate decides either way.

A model call costs money: it is booked in the ledger (kind `model`, so CbR includes it)
under the call's own key, and an agent past its quarterly model budget makes no call:
its run fails safe into the CSM's inbox, like a plan the model could not give."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from autopilot.runtime import services
from autopilot.runtime.agents import playbook
from autopilot.runtime.agents.playbook import RunFacts, StretchPlan
from autopilot.runtime.contracts.account import AccountSnapshot, Assessment
from autopilot.runtime.contracts.agent_spec import AgentSpec, LlmPlanner
from autopilot.runtime.ledger.model import book_model_cost, model_spend
from autopilot.runtime.llm import client
from autopilot.runtime.llm.config import resolve
from autopilot.runtime.llm.errors import LlmError, LlmRetryable
from autopilot.runtime.planning import gather
from autopilot.runtime.planning.planner import FAIL_SAFE, plan_with_llm, review_action
from autopilot.runtime.planning.prompt import DataText
from autopilot.runtime.store.events import Event

log = logging.getLogger(__name__)
# Attempts of the plan activity at a model that does not answer (429, 5xx, timeouts)
# before the run fails safe into the inbox instead.
MODEL_ATTEMPTS = 5


def plan_stretch(
    svc: services.Services,
    spec: AgentSpec,
    account: AccountSnapshot,
    assessment: Assessment,
    facts: RunFacts,
    now: datetime,
    *,
    call_key: str,
    since: datetime,
    tool_fields: Callable[[str], set[str]],
    **kw: Any,
) -> StretchPlan:
    """`kw`: plan_stretch's keyword inputs (cursor, event, room, rejected, learned, csm).
    `call_key` names this planning (the activity attempt) in the ledger."""
    if not isinstance(spec.planner, LlmPlanner):
        return playbook.plan_stretch(
            spec, account, assessment, facts, now.date(), tool_fields=tool_fields, **kw
        )
    budget = spec.planner.model_budget_per_quarter
    with Session(svc.db) as session:
        spent = model_spend(session, agent=spec.name, now=now)
        rows = session.exec(
            select(Event.type, Event.payload)
            .where(Event.account_id == account.id, Event.received_at >= since)
            .order_by(col(Event.id))
        ).all()

    def fail_safe(reason: str) -> StretchPlan:
        """No model plan: the CSM reviews what the playbook would do, with the reason."""
        stretch = playbook.plan_stretch(
            spec, account, assessment, facts, now.date(), tool_fields=tool_fields, **kw
        )
        if stretch.exit is not None or not stretch.actions:
            return stretch  # nothing to ask a model about
        stretch.actions = [review_action(spec, account, reason, kw.get("csm"))]
        stretch.notes.append(playbook.Note(step=FAIL_SAFE, outcome="llm_failed", detail=reason))
        return stretch

    if budget is not None and spent >= budget:
        return fail_safe(
            f"llm.budget_exceeded: {spec.name} spent {spent:.4f} of its {budget:.4f} USD this quarter"
        )
    try:
        plan = plan_with_llm(
            spec,
            account,
            assessment,
            facts,
            now.date(),
            config=resolve(spec.planner, svc.settings),
            chat=client.chat,
            tools=svc.tools,
            texts=gather.texts_from_events([(t, p or {}) for t, p in rows]),
            knowledge=_knowledge(svc, spec, assessment),
            **kw,
        )
    except LlmRetryable as err:  # 429, 5xx, timeout: Temporal retries, after the hint
        attempt = activity.info().attempt if activity.in_activity() else MODEL_ATTEMPTS
        if attempt < MODEL_ATTEMPTS:
            delay = timedelta(seconds=err.retry_after_s) if err.retry_after_s else None
            raise ApplicationError(str(err), type=err.code, next_retry_delay=delay) from err
        return fail_safe(f"{err.code}: no answer after {attempt} attempts: {err}")
    except LlmError as err:  # rejected, misconfigured, malformed: asking again will not help
        return fail_safe(f"{err.code}: {err}")
    if plan.cost:
        book_model_cost(
            svc.db,
            key=call_key,
            account_id=account.id,
            agent=spec.name,
            amount=plan.cost,
            note="planner",
            at=now,
        )
    return plan.stretch


def _knowledge(svc: services.Services, spec: AgentSpec, assessment: Assessment) -> list[DataText]:
    """Knowledge for the situation; none (logged) when the knowledge base cannot answer."""
    try:
        return gather.knowledge_for(svc.settings, spec, assessment)
    except (OSError, ValueError, RuntimeError) as err:  # chroma raises these (and subclasses)
        log.warning("knowledge base unavailable for %s: %s", spec.name, err)
        return []
