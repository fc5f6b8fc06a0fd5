"""What the store holds around a run, for the auditor's timeline: the events that
triggered it, the account's stored score with its explanation, and each action's cost
(what it was expected to cost, and what the ledger booked once it executed).

Only stored facts: the score is the account's latest (its `scored_at` says when), the
one the planner saw is in the plan step's assessment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, select

from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.customer import AccountScore, CostEntry
from autopilot.runtime.store.events import Event


@dataclass(frozen=True)
class TriggerEvent:
    id: int
    type: str
    account_id: str
    occurred_at: str
    received_at: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Cost:
    run_key: str
    tool: str
    status: str
    expected_cost: float
    discount_pct: float
    booked: float | None  # the cost ledger's entry, once executed (None: nothing booked)
    booked_kind: str | None


@dataclass(frozen=True)
class Score:
    account_id: str
    health: float
    risk: float
    baseline: float
    factors: list[Any]  # the explanation: each factor's contribution
    features: dict[str, Any]
    model_version: str
    scored_at: str


@dataclass
class RunContext:
    account_id: str | None
    events: list[TriggerEvent]
    score: Score | None
    costs: list[Cost]

    @property
    def total_expected(self) -> float:
        return sum(c.expected_cost for c in self.costs)

    @property
    def total_booked(self) -> float:
        return sum(c.booked or 0.0 for c in self.costs)


def event_ids(run_keys: list[str], workflow_id: str) -> list[int]:
    """Run keys are `workflow_id/event_id/index`: the events behind the run's actions."""
    ids: set[int] = set()
    for key in run_keys:
        head = key.removeprefix(f"{workflow_id}/").split("/", 1)[0]
        if head.isdigit():
            ids.add(int(head))
    return sorted(ids)


def run_context(session: Session, workflow_id: str, run_keys: list[str]) -> RunContext:
    actions = list(
        session.exec(
            select(ActionRecord)
            .where(ActionRecord.workflow_id == workflow_id)
            .order_by(col(ActionRecord.created_at))
        )
    )
    account_id = actions[0].account_id if actions else None
    events = [
        TriggerEvent(
            id=e.id,
            type=e.type,
            account_id=e.account_id,
            occurred_at=e.occurred_at.isoformat(),
            received_at=e.received_at.isoformat(),
            payload=dict(e.payload),
        )
        for i in event_ids(run_keys + [a.run_key for a in actions], workflow_id)
        if (e := session.get(Event, i)) is not None and e.id is not None
    ]
    account_id = account_id or (events[0].account_id if events else None)
    booked = {
        c.action_key: c
        for c in session.exec(
            select(CostEntry).where(col(CostEntry.action_key).in_([a.run_key for a in actions]))
        )
    }
    costs: list[Cost] = []
    for a in actions:
        entry = booked.get(a.run_key)
        costs.append(
            Cost(
                run_key=a.run_key,
                tool=a.tool,
                status=a.status,
                expected_cost=a.expected_cost,
                discount_pct=a.discount_pct,
                booked=entry.amount if entry else None,
                booked_kind=entry.kind if entry else None,
            )
        )
    row = session.get(AccountScore, account_id) if account_id else None
    score = (
        Score(
            account_id=row.account_id,
            health=row.health,
            risk=row.risk,
            baseline=row.baseline,
            factors=list(row.factors),
            features=dict(row.features),
            model_version=row.model_version,
            scored_at=row.scored_at.isoformat(),
        )
        if row is not None
        else None
    )
    return RunContext(account_id=account_id, events=events, score=score, costs=costs)
