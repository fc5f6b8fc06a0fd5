"""The account snapshot agents and triggers see: the store's account, its contacts,
its Health 2.0 score with the reasons behind it (the one health), and its compliance
work (decisions still to record, opt-outs lifted). An account with
subscriptions shows the ARR and seats they give today, and its renewal date moves on at
each billing boundary once passed, whether or not an event came since."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from autopilot.runtime.accounts.compliance_due import decisions_to_record, opt_outs_lifted
from autopilot.runtime.accounts.subscriptions import current_fields
from autopilot.runtime.contracts.account import AccountSnapshot, ContactInfo, HealthReason
from autopilot.runtime.health.model import Explanation
from autopilot.runtime.health.scoring import current
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.customer import Subscription

REASONS = 3  # the factors that pull the score down most, as the action's reasons

# The account's own fields in a snapshot (the rest is health and contacts).
ACCOUNT_FIELDS = tuple(f for f in AccountSnapshot.model_fields if f in Account.model_fields)


def get_snapshot(session: Session, *, account_id: str, today: date) -> AccountSnapshot | None:
    account = session.get(Account, account_id)
    if account is None:
        return None
    health = current(session, account, today=today)
    fields = account_fields(account)
    subs = list(session.scalars(_SUBSCRIPTIONS, {"account_id": account_id}))
    if subs:
        derived = current_fields(subs, today, account.renewal_date)
        fields |= {k: v for k, v in derived.items() if k in fields}
    return snapshot_of(
        fields,
        health=health.health,
        risk=health.risk,
        reasons=reasons_of(health),
        contacts=contact_infos(session, [account_id])[account_id],
        decisions_to_record=decisions_to_record(session, [account_id]).get(account_id, 0),
        opt_outs_lifted=opt_outs_lifted(session, [account_id]).get(account_id, 0),
    )


def account_fields(account: Account) -> dict[str, Any]:
    """The account as it is now: a batch takes one of these after each event it folds."""
    return {f: getattr(account, f) for f in ACCOUNT_FIELDS}


def reasons_of(health: Explanation) -> list[HealthReason]:
    down = sorted((f for f in health.factors if f.contribution < 0), key=lambda f: f.contribution)
    return [
        HealthReason(label=f.label, value=f.value, contribution=f.contribution)
        for f in down[:REASONS]
    ]


def contact_infos(session: Session, account_ids: Iterable[str]) -> dict[str, list[ContactInfo]]:
    """The contacts of each account (in one query), ordered by id."""
    ids = list(account_ids)
    out: dict[str, list[ContactInfo]] = {a: [] for a in ids}
    if not ids:
        return out
    for account_id, *values in session.connection().execute(_CONTACTS, {"ids": ids}):
        out[account_id].append(
            ContactInfo(**dict(zip(ContactInfo.model_fields, values, strict=True)))
        )
    return out


# Built once: every run's snapshot reads them.
_SUBSCRIPTIONS = select(Subscription).where(col(Subscription.account_id) == bindparam("account_id"))
_CONTACTS = (
    select(col(Contact.account_id), *(getattr(Contact, f) for f in ContactInfo.model_fields))
    .where(col(Contact.account_id).in_(bindparam("ids", expanding=True)))
    .order_by(col(Contact.id))
)


def snapshot_of(
    fields: dict[str, Any],
    *,
    health: float,
    risk: float,
    reasons: list[HealthReason],
    contacts: list[ContactInfo],
    decisions_to_record: int = 0,
    opt_outs_lifted: int = 0,
) -> AccountSnapshot:
    return AccountSnapshot(
        **fields,
        health=health,
        churn_risk=risk,
        health_reasons=reasons,
        contacts=contacts,
        decisions_to_record=decisions_to_record,
        opt_outs_lifted=opt_outs_lifted,
    )
