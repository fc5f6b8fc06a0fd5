"""The simulated world: its constants, the simulator's events of an account's day, the
runs in flight, the simulated clock and when a day's decisions are taken."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from cronsim import CronSim

from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.health.features import MODULES

DEFAULT_ACCOUNTS = 240  # the demo portfolio (`autopilot up`)
DEFAULT_SEED = 7  # the demo's seed
CHURN_RATE = 0.22  # the simulator's default share of churners (over its whole history)
DIP_RATE = 0.1  # as the demo's history: the same engagement levels carry on
SNAPSHOT_EVERY = 7  # days between usage snapshots (30-day active users, seats in use)
TICKET_DAYS = {"P1": 1, "P3": 3}  # a ticket is closed this many days after it opened
LOCAL_HOUR = 11  # each account's day is decided at 11:00 its first contact's time
KEY = "sim:"  # every run key the simulation writes starts so


class SimulationError(ValueError):
    """Bad input (an unknown agent or segment, a store that cannot be copied)."""


def day_events(
    p: Any, i: int, t: int, *, arr: float, snapshot: bool
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Account `i`'s events on the simulator's day `t` (EventIn payloads), and the
    tickets it opened (days until closed, priority)."""
    s = p.signals
    out: list[dict[str, Any]] = []
    if snapshot:
        active_30d = int(s["active_users"][i, max(0, t - 29) : t + 1].max())
        out.append(
            {
                "type": "usage_snapshot",
                "active_users": active_30d,
                "seats_used": int(p.seats_used[i, t]),
            }
        )
    if (logins := int(s["logins"][i, t])) > 0:
        out.append(
            {"type": "login", "logins": logins, "active_users": int(s["active_users"][i, t])}
        )
    bits = int(s["modules"][i, t])
    out += [{"type": "feature_use", "module": m} for k, m in enumerate(MODULES) if bits & (1 << k)]
    p1 = int(s["p1"][i, t])
    other = max(0, int(s["tickets"][i, t]) - p1)
    opened = [(TICKET_DAYS["P1"], "P1")] * p1 + [(TICKET_DAYS["P3"], "P3")] * other
    out += [{"type": "ticket_opened", "priority": prio} for _, prio in opened]
    if (n := int(s["sentiment_n"][i, t])) > 0:
        value = float(np.clip(s["sentiment_sum"][i, t] / n, -1, 1))
        out.append({"type": "sentiment", "sentiment": round(value, 3)})
    if p.nps[i, t] >= 0 and (t == 0 or p.nps[i, t] != p.nps[i, t - 1]):
        out.append({"type": "nps", "score": int(p.nps[i, t])})
    out += [{"type": "payment_failed", "amount": round(arr / 12, 2)}] * int(
        s["payment_failed"][i, t]
    )
    return out, opened


@dataclass
class Run:
    agent: str
    account_id: str
    number: int
    started: date
    event: dict[str, Any]
    cursor: int = 0
    stretch: int = 0
    done: dict[str, str] = field(default_factory=dict)
    wake: date | None = None

    @property
    def workflow_id(self) -> str:
        return f"{KEY}{self.agent}:{self.account_id}"


class Clock:
    """The throwaway services' clock: the simulated moment a decision is taken."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def decided_at(a: AccountSnapshot, day: date) -> datetime:
    """11:00 in the account's first contact's time zone (inside everyone's business day,
    outside quiet hours), kept on `day` in UTC; noon UTC for an account without contacts."""
    if not a.contacts:
        return datetime.combine(day, time(12), UTC)
    at = datetime.combine(day, time(LOCAL_HOUR), ZoneInfo(a.contacts[0].timezone)).astimezone(UTC)
    lo, hi = datetime.combine(day, time(0, 30), UTC), datetime.combine(day, time(23, 30), UTC)
    return min(max(at, lo), hi)


def fires_on(cron: str, day: date) -> bool:
    start = datetime.combine(day, time.min) - timedelta(seconds=1)
    return next(CronSim(cron, start)).date() == day


@dataclass
class Portfolio:
    ids: list[str]
    arr: dict[str, float]
    segment: dict[str, str]
    risk0: dict[str, float]
    renewing: set[str]
