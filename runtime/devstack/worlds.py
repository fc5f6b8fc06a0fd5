"""The simulator's worlds: differently-shaped portfolios, so that a model and its
threshold are judged on more than the one world they were trained on (issue #15: the
old default alerted on 3.5-23x the churn base rate of data that was not its
simulator).

Each world moves one axis away from `default` (today's simulator, reproduced exactly
for the same seed): when churners leave (at a renewal or any time), how long their
decline is visible (20-80 days or 1-7), the billing period (one annual renewal date or
monthly renewals), how dense daily usage is, and how many accounts churn."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    name: str
    about: str
    churn_rate: float = 0.22  # share of accounts that churn within the history
    at_renewal: float = 0.7  # share of churners who leave at a renewal (the rest any day)
    decline: tuple[int, int] = (20, 80)  # days of visible decline before churn: [lo, hi)
    # Renewal every `plan_days` days (30: monthly plans, 365: annual ones); None is the
    # original simulator's one renewal date per account, which never moves.
    plan_days: int | None = None
    usage: float = 1.0  # density of daily activity: 1 dense (every workday), < 1 sparse
    dip_rate: float = 0.15  # healthy accounts' temporary dips (the false alarms to avoid)


DEFAULT = World("default", "today's simulator: churn mostly at renewal, visible decline")
WORLDS: dict[str, World] = {
    w.name: w
    for w in (
        DEFAULT,
        World("anytime", "churn any day of an annual term", at_renewal=0.0, plan_days=365),
        World("sudden", "churn after a 1-7 day decline", decline=(1, 8), plan_days=365),
        World("monthly", "monthly plans, churn at a monthly renewal", at_renewal=1.0, plan_days=30),
        World("sparse", "sparse usage: a fifth of the daily activity", usage=0.2, plan_days=365),
        World("low_churn", "a 6 % churn base rate", churn_rate=0.06, plan_days=365),
        World(
            "high_churn",
            "a 40 % churn base rate, sparse, churn any day",
            churn_rate=0.4,
            at_renewal=0.3,
            usage=0.4,
            plan_days=365,
        ),
    )
}


def world(name: str) -> World:
    """The named world; ValueError naming the field otherwise."""
    if name not in WORLDS:
        raise ValueError(f"world: {name!r} is not one of {', '.join(WORLDS)}")
    return WORLDS[name]
