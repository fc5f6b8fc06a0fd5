"""One account as people and agents see it: snapshot, Health 2.0 with its exact
explanation, expansion and adoption signals, the latest alert, and the optimizer's
options. Shared by `GET /accounts/{id}`, `autopilot accounts show` and the read tools."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, select

from autopilot.runtime.health.features import FEATURES
from autopilot.runtime.health.scoring import current
from autopilot.runtime.ledger.spend import quarter_limits
from autopilot.runtime.optimizer.solver import Goal, optimize
from autopilot.runtime.optimizer.uplift import learned_uplift
from autopilot.runtime.policy.limits import PolicyLimits
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import RiskAlert

SEAT_SATURATION = 0.9
ADOPTION_TARGET = 0.5  # share of modules in use over 30 days
GROWTH = 1.2  # logins last 7 days vs the 90-day pace


def signals(features: dict[str, float], account: Account) -> list[dict[str, Any]]:
    out = []
    saturation = account.seats_used / account.seats_purchased if account.seats_purchased else 0.0
    if saturation >= SEAT_SATURATION:
        out.append(
            {
                "type": "expansion",
                "signal": "seat_saturation",
                "value": round(saturation, 3),
                "detail": f"{account.seats_used}/{account.seats_purchased} seats in use (≥ {SEAT_SATURATION:.0%})",
            }
        )
    if features["module_adoption_30d"] < ADOPTION_TARGET:
        out.append(
            {
                "type": "adoption",
                "signal": "module_adoption_low",
                "value": features["module_adoption_30d"],
                "detail": f"{features['module_adoption_30d']:.0%} of modules used in 30 days "
                f"(target {ADOPTION_TARGET:.0%})",
            }
        )
    if features["login_trend_7v90"] >= GROWTH:
        out.append(
            {
                "type": "expansion",
                "signal": "usage_growth",
                "value": round(features["login_trend_7v90"], 3),
                "detail": f"logins at {features['login_trend_7v90']:.1f}× their 90-day pace",
            }
        )
    elif features["login_trend_7v90"] <= 0.6:
        out.append(
            {
                "type": "risk",
                "signal": "usage_drop",
                "value": round(features["login_trend_7v90"], 3),
                "detail": f"logins at {features['login_trend_7v90']:.1f}× their 90-day pace",
            }
        )
    return out


def account_view(
    session: Session,
    account: Account,
    limits: PolicyLimits,
    *,
    today: date,
    now: datetime,
    renewal_target: float = 0.8,
) -> dict[str, Any]:
    e = current(session, account, today=today)
    features = {f.feature: f.value for f in e.factors if f.feature in FEATURES}
    alert = session.exec(
        select(RiskAlert)
        .where(RiskAlert.account_id == account.id)
        .order_by(col(RiskAlert.at).desc())
    ).first()
    left = quarter_limits(session, account, limits, now=now)
    plan = optimize(
        Goal(kind="retention", target=renewal_target, current=e.risk),
        left,
        segment=account.segment,
        arr=account.arr,
        learned=learned_uplift(session, account),
    )
    return {
        "account": account.model_dump(mode="json", exclude={"custom"}) | {"custom": account.custom},
        "health": e.model_dump(mode="json"),
        "check": {
            "baseline_plus_contributions": round(
                e.baseline + sum(f.contribution for f in e.factors), 6
            )
        },
        "signals": signals(features, account),
        "alert": alert.model_dump(mode="json") if alert else None,
        "optimizer": plan.model_dump(mode="json"),
    }
