"""The account snapshot agents and triggers see: the store's account, its contacts,
and its Health 2.0 score with the reasons behind it (the one health)."""

from __future__ import annotations

from datetime import date

from sqlmodel import Session, col, select

from autopilot.runtime.contracts.account import AccountSnapshot, ContactInfo, HealthReason
from autopilot.runtime.health.scoring import current
from autopilot.runtime.store.accounts import Account, Contact

REASONS = 3  # the factors that pull the score down most, as the action's reasons


def get_snapshot(session: Session, *, account_id: str, today: date) -> AccountSnapshot | None:
    account = session.get(Account, account_id)
    if account is None:
        return None
    contacts = session.exec(
        select(Contact).where(Contact.account_id == account_id).order_by(col(Contact.id))
    ).all()
    health = current(session, account, today=today)
    down = sorted((f for f in health.factors if f.contribution < 0), key=lambda f: f.contribution)[
        :REASONS
    ]
    return AccountSnapshot(
        **account.model_dump(exclude={"org_id", "churned_at", "custom"}),
        health=health.health,
        churn_risk=health.risk,
        health_reasons=[
            HealthReason(label=f.label, value=f.value, contribution=f.contribution) for f in down
        ],
        contacts=[
            ContactInfo(**c.model_dump(exclude={"account_id", "seniority", "region"}))
            for c in contacts
        ],
    )
