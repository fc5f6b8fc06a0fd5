"""The portfolio simulator: daily histories of SaaS accounts with churn and renewal
outcomes, shared by model training, the early-warning report, the benchmarks and
the demo's history.

An account has an engagement level that drives its daily signals (active users,
logins, modules, tickets, sentiment, payments, NPS). Churners decline over 20–80
days before their churn date (most at renewal); some healthy accounts dip and
recover (the false alarms an early-warning system must not chase); noise is on
every signal. A `World` (devstack/worlds.py) reshapes that: churn at renewal or any
time, a visible or sudden decline, monthly or annual renewals, sparse or dense usage,
the churn rate; the default world is the simulator as it always was, draw for draw."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autopilot.runtime.devstack.worlds import DEFAULT, World
from autopilot.runtime.health.features import MODULES, SIGNALS, WINDOW, Windows

SEGMENTS = ("enterprise", "mid_market", "smb", "tech_touch")
SEGMENT_WEIGHTS = (0.15, 0.3, 0.35, 0.2)
SEATS = {"enterprise": (250, 1200), "mid_market": (60, 250), "smb": (10, 60), "tech_touch": (2, 12)}
ARR_PER_SEAT = {"enterprise": 900.0, "mid_market": 700.0, "smb": 500.0, "tech_touch": 400.0}


@dataclass
class Portfolio:
    segment: np.ndarray  # (n,) str
    seats_purchased: np.ndarray  # (n,)
    arr: np.ndarray  # (n,)
    signals: dict[str, np.ndarray]  # each (n, days)
    seats_used: np.ndarray  # (n, days)
    nps: np.ndarray  # (n, days): the latest answer so far, -1 before any
    renewal_day: np.ndarray  # (n,) day index of the (next) renewal
    churn_day: np.ndarray  # (n,) day index of churn, -1 when the account stays
    days: int
    plan_days: int | None = None  # renewals every plan_days from renewal_day; None: one date

    def next_renewal(self, day: int) -> np.ndarray:
        """(n,) the renewal date known on `day`: the next one on or after it (with one
        fixed date, that date, even once past)."""
        if self.plan_days is None:
            return self.renewal_day
        return day + (self.renewal_day - day) % self.plan_days

    @property
    def n(self) -> int:
        return len(self.segment)

    def windows(self, day: int, idx: np.ndarray | None = None) -> Windows:
        """The feature windows of accounts `idx` as of the end of `day`."""
        idx = np.arange(self.n) if idx is None else idx
        lo = day - WINDOW + 1
        assert lo >= 0, f"day {day} has less than {WINDOW} days of history"
        return Windows(
            signals={k: v[idx, lo : day + 1] for k, v in self.signals.items()},
            seats_purchased=self.seats_purchased[idx],
            seats_used=self.seats_used[idx, day],
            nps=self.nps[idx, day],
            days_to_renewal=self.next_renewal(day)[idx] - day,
        )


def simulate(
    n: int,
    *,
    days: int = 300,
    seed: int = 0,
    churn_rate: float | None = None,
    dip_rate: float | None = None,
    world: World = DEFAULT,
    segment: np.ndarray | None = None,
    seats: np.ndarray | None = None,
) -> Portfolio:
    """`segment` and `seats` give existing accounts a history; otherwise drawn.
    `churn_rate` and `dip_rate` override the world's. Every world makes the same random
    draws in the same order, so the default world is today's output for the same seed."""
    churn_rate = world.churn_rate if churn_rate is None else churn_rate
    dip_rate = world.dip_rate if dip_rate is None else dip_rate
    rng = np.random.default_rng(seed)
    if segment is None:
        segment = rng.choice(np.array(SEGMENTS), size=n, p=SEGMENT_WEIGHTS)
    if seats is None:
        lo = np.array([SEATS[s][0] for s in segment])
        hi = np.array([SEATS[s][1] for s in segment])
        seats = rng.integers(lo, hi + 1)
    arr = np.round(
        seats * np.array([ARR_PER_SEAT[s] for s in segment]) * rng.uniform(0.8, 1.2, n), -2
    )
    t = np.arange(days)[None, :]

    base = rng.uniform(0.45, 0.95, n)[:, None]
    renewal = rng.integers(WINDOW + 30, days + 240, n)
    churns = rng.random(n) < churn_rate
    # The world's share of churners leave at a renewal (by default 70 %), the rest any
    # day. Both must fall inside the history.
    at_renewal = rng.random(n) < world.at_renewal
    lo = min(WINDOW + 40, days - 1)
    anytime = rng.integers(lo, days, n)
    if world.plan_days is None:
        churn = np.where(at_renewal & (renewal < days), renewal, anytime)
    else:  # at the renewal on or after a day drawn at random, else the one before it
        at = anytime + (renewal - anytime) % world.plan_days
        at = np.where(at < days, at, at - world.plan_days)
        churn = np.where(at_renewal & (at >= lo), at, anytime)
    churn = np.where(churns, churn, -1)
    decline = np.maximum(rng.integers(*world.decline, n), 1)
    start = churn - decline
    progress = np.clip((t - start[:, None]) / decline[:, None], 0, 1) * churns[:, None]
    floor = rng.uniform(0.05, 0.3, n)[:, None]
    engagement = base - (base - floor) * progress
    # Healthy accounts' temporary dips (holidays, a reorg): down and back up.
    dips = (rng.random(n) < dip_rate) & ~churns
    dip_at = rng.integers(min(WINDOW, days - 35), days, n)[:, None]
    dip_len = rng.integers(10, 35, n)[:, None]
    in_dip = dips[:, None] & (t >= dip_at) & (t < dip_at + dip_len)
    engagement = np.where(in_dip, engagement * rng.uniform(0.4, 0.7, n)[:, None], engagement)
    engagement = np.clip(engagement + rng.normal(0, 0.05, engagement.shape), 0.01, 1.0)
    weekday = np.where(t % 7 < 5, 1.0, 0.25)
    gone = (churn[:, None] >= 0) & (t >= churn[:, None])  # after churn: no activity at all

    active = rng.binomial(seats[:, None], engagement * 0.8 * weekday * world.usage)
    logins = rng.poisson(active * 1.6)
    module_p = engagement[..., None] * np.array([1.0, 0.7, 0.5, 0.4, 0.3, 0.25])[None, None, :]
    used = (
        rng.random((*engagement.shape, len(MODULES)))
        < module_p * (weekday * world.usage)[..., None]
    )
    modules = (used * (1 << np.arange(len(MODULES)))).sum(axis=2)
    tickets = rng.poisson(0.04 + 0.25 * (1 - engagement) * progress + 0.03 * seats[:, None] / 500)
    p1 = rng.poisson(0.002 + 0.03 * progress)
    has_sent = rng.random(engagement.shape) < 0.08 * world.usage
    sentiment = np.clip(rng.normal(engagement * 1.4 - 0.6, 0.35), -1, 1) * has_sent
    payment = (rng.random(engagement.shape) < 0.0015 + 0.012 * progress).astype(int)
    asked = rng.random(engagement.shape) < 1 / 45
    answer = np.clip(np.round(engagement * 11 - 1 + rng.normal(0, 1.5, engagement.shape)), 0, 10)
    nps = _carry_forward(np.where(asked, answer, -1))
    seats_used = np.minimum(
        seats[:, None], np.round(seats[:, None] * np.clip(engagement * 1.05 + 0.1, 0, 1))
    )

    signals = {
        "logins": logins,
        "active_users": active,
        "modules": modules,
        "tickets": tickets,
        "p1": p1,
        "sentiment_sum": sentiment,
        "sentiment_n": has_sent.astype(int),
        "payment_failed": payment,
    }
    for k, v in signals.items():
        signals[k] = np.where(gone, 0, v)
    assert set(signals) == set(SIGNALS)
    return Portfolio(
        segment=segment,
        seats_purchased=seats,
        arr=arr,
        signals=signals,
        seats_used=np.where(gone, 0, seats_used),
        nps=nps,
        renewal_day=renewal,
        churn_day=churn,
        days=days,
        plan_days=world.plan_days,
    )


def _carry_forward(a: np.ndarray) -> np.ndarray:
    """Each row's latest non-negative value so far (-1 before the first)."""
    idx = np.where(a >= 0, np.arange(a.shape[1])[None, :], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    out = np.take_along_axis(a, idx, axis=1)
    first = np.maximum.accumulate(a >= 0, axis=1)
    return np.where(first, out, -1)
