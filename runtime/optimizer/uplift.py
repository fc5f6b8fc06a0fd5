"""What is left of an account's quarterly limits, for the optimizer: the budget
(policy's per-segment share of ARR minus this quarter's spend) and the high-touch
contact cap."""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources

from sqlmodel import Session

from autopilot.runtime.optimizer.solver import Limits
from autopilot.runtime.ledger.spend import ledger
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord


def _policy_data(package: str) -> dict:  # type: ignore[type-arg]
    path = resources.files("autopilot.policies") / "autopilot" / package / "data.json"
    return json.loads(path.read_text())["limits"]  # type: ignore[no-any-return]


def quarter_limits(session: Session, account: Account, *, now: datetime) -> Limits:
    budget = _policy_data("budget")["segments"][account.segment]["account_quarter_pct_of_arr"] * account.arr / 100
    cap = _policy_data("contact").get("high_touch_per_quarter", 2)
    spent = ledger(session, account_id=account.id, segment=account.segment, now=now)
    return Limits(budget=max(0.0, round(budget - spent.account_spend_quarter, 2)),
                  high_touch_left=max(0, int(cap) - spent.high_touch_contacts_quarter), contacts_left=4)


def learned_uplift(session: Session, account: Account) -> dict[str, tuple[float, int]]:
    """Uplift per catalogue action learned from this organisation's history: accounts of
    the segment that were ever at risk (an early-warning alert), the actions executed on
    them, and whether they were retained. Too few outcomes: empty, the priors apply."""
    from sqlmodel import col, select

    from autopilot.runtime.optimizer.solver import learn_uplift, load_catalogue
    from autopilot.runtime.store.customer import RiskAlert

    at_risk = select(RiskAlert.account_id).where(RiskAlert.org_id == account.org_id)
    accounts = session.exec(select(Account).where(Account.segment == account.segment,
                                                  col(Account.id).in_(at_risk))).all()
    if not accounts:
        return {}
    catalogue = load_catalogue()
    executed: dict[str, set[str]] = {}
    for r in session.exec(select(ActionRecord).where(ActionRecord.status == "executed",
                                                     col(ActionRecord.account_id).in_([a.id for a in accounts]))):
        executed.setdefault(r.account_id, set()).add(_catalogue_name(r, catalogue))
    outcomes = [{"segment": a.segment, "actions": sorted(executed.get(a.id, set()) - {""}),
                 "retained": a.status != "churned"} for a in accounts]
    return learn_uplift(outcomes, segment=account.segment)


def _catalogue_name(record: ActionRecord, catalogue: list) -> str:  # type: ignore[type-arg]
    """The catalogue action an executed tool call was: by tool, and by discount for offers."""
    for a in catalogue:
        if a.tool == record.tool and (not a.discount_pct or abs(a.discount_pct - record.discount_pct) < 2.5):
            return str(a.name)
    return ""
