"""What is left of an account's quarterly limits, for the optimizer: the budget
(policy's per-segment share of ARR minus this quarter's spend) and the high-touch
contact cap."""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources

from sqlmodel import Session

from autopilot.runtime.intel.optimizer import Limits
from autopilot.runtime.ledger import ledger
from autopilot.runtime.store.accounts import Account


def _policy_data(package: str) -> dict:  # type: ignore[type-arg]
    path = resources.files("autopilot.policies") / "autopilot" / package / "data.json"
    return json.loads(path.read_text())["limits"]  # type: ignore[no-any-return]


def quarter_limits(session: Session, account: Account, *, now: datetime) -> Limits:
    budget = _policy_data("budget")["segments"][account.segment]["account_quarter_pct_of_arr"] * account.arr / 100
    cap = _policy_data("contact").get("high_touch_per_quarter", 2)
    spent = ledger(session, account_id=account.id, segment=account.segment, now=now)
    return Limits(budget=max(0.0, round(budget - spent.account_spend_quarter, 2)),
                  high_touch_left=max(0, int(cap) - spent.high_touch_contacts_quarter), contacts_left=4)
