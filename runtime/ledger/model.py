"""Model cost in the ledger: every LLM call's tokens and cost are a CostEntry of kind
`model`, so cost to retain includes what the agents' models cost, and an agent's
quarterly model budget is checked against what it has spent."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select

from autopilot.runtime.ledger.cbr import period
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import CostEntry

KIND = "model"


def model_spend(session: Session, *, agent: str, now: datetime) -> float:
    """What `agent`'s model calls have cost this quarter (USD), for the budget check and
    the gate's input."""
    since, until = period(now)
    total = session.exec(
        select(func.coalesce(func.sum(CostEntry.amount), 0.0)).where(
            CostEntry.kind == KIND,
            CostEntry.agent == agent,
            CostEntry.at >= since,
            CostEntry.at < until,
        )
    ).one()
    return float(total)


def book_model_cost(
    db: Engine,
    *,
    key: str,
    account_id: str,
    agent: str,
    amount: float,
    note: str,
    at: datetime,
) -> bool:
    """Book one model call once: `key` names the call (not the attempt), so a retried
    activity, or an attempt that finished after its retry began, is not counted twice.
    True when this call booked it."""
    with Session(db) as session:
        if session.exec(select(CostEntry.id).where(CostEntry.action_key == key)).first():
            return False
        account = session.get(Account, account_id)
        session.add(
            CostEntry(
                org_id=account.org_id if account else "demo",
                account_id=account_id,
                kind=KIND,
                amount=amount,
                agent=agent,
                playbook=agent,
                action_key=key,
                at=at,
                note=note,
            )
        )
        try:
            session.commit()
        except IntegrityError:  # the other attempt booked it between our read and write
            session.rollback()
            return False
    return True
