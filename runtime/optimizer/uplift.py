"""Uplift learned from this organisation's own outcomes (T-learner style), for the
optimizer: which catalogue actions kept at-risk accounts of a segment."""

from __future__ import annotations

from sqlmodel import Session, col, select

from autopilot.runtime.optimizer.catalogue import CatalogueAction, load_catalogue
from autopilot.runtime.optimizer.solver import learn_uplift
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.customer import RiskAlert


def learned_uplift(session: Session, account: Account) -> dict[str, tuple[float, int]]:
    """Uplift per catalogue action learned from this organisation's history: accounts of
    the segment that were ever at risk (an early-warning alert), the actions executed on
    them, and whether they were retained. Too few outcomes: empty, the priors apply."""
    at_risk = select(RiskAlert.account_id).where(RiskAlert.org_id == account.org_id)
    accounts = session.exec(
        select(Account).where(Account.segment == account.segment, col(Account.id).in_(at_risk))
    ).all()
    if not accounts:
        return {}
    catalogue = load_catalogue()
    executed: dict[str, set[str]] = {}
    for r in session.exec(
        select(ActionRecord).where(
            ActionRecord.status == "executed",
            col(ActionRecord.account_id).in_([a.id for a in accounts]),
        )
    ):
        executed.setdefault(r.account_id, set()).add(_catalogue_name(r, catalogue))
    outcomes = [
        {
            "segment": a.segment,
            "actions": sorted(executed.get(a.id, set()) - {""}),
            "retained": a.status != "churned",
        }
        for a in accounts
    ]
    return learn_uplift(outcomes, segment=account.segment)


def _catalogue_name(record: ActionRecord, catalogue: list[CatalogueAction]) -> str:
    """The catalogue action an executed tool call was: by tool, and by discount for offers."""
    for a in catalogue:
        if a.tool == record.tool and (
            not a.discount_pct or abs(a.discount_pct - record.discount_pct) < 2.5
        ):
            return str(a.name)
    return ""
