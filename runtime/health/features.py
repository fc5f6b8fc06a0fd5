"""Account features over 7/30/90-day windows, from daily rollups. One vectorised
function serves every path: an account's incremental update on an event (a 1×90
array), the full rescore (N×90) and the simulator's histories."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW = 90  # days of daily rollups a feature vector needs
MODULES = ("core", "reports", "automation", "integrations", "admin", "mobile")
# What a day's rollup holds, per account (the AccountDay columns).
SIGNALS = (
    "logins",
    "active_users",
    "modules",
    "tickets",
    "p1",
    "sentiment_sum",
    "sentiment_n",
    "payment_failed",
)

FEATURES = (
    "active_ratio_7d",
    "active_ratio_30d",
    "logins_per_seat_30d",
    "login_trend_7v90",
    "module_adoption_30d",
    "module_adoption_change",
    "tickets_30d",
    "p1_90d",
    "sentiment_30d",
    "sentiment_change_30v90",
    "payment_failed_90d",
    "seat_utilisation",
    "nps",
    "days_to_renewal",
)
# How a feature reads to a person (the explanation's wording).
LABELS = {
    "active_ratio_7d": "active users / seats, last 7 days",
    "active_ratio_30d": "active users / seats, 30 days",
    "logins_per_seat_30d": "logins per seat, 30 days",
    "login_trend_7v90": "logins last 7 days vs 90-day pace",
    "module_adoption_30d": "share of modules used, 30 days",
    "module_adoption_change": "module adoption, 30 vs 31-90 days",
    "tickets_30d": "tickets opened, 30 days",
    "p1_90d": "P1 tickets, 90 days",
    "sentiment_30d": "sentiment, 30 days",
    "sentiment_change_30v90": "sentiment, 30 days vs 90",
    "payment_failed_90d": "failed payments, 90 days",
    "seat_utilisation": "seats used / purchased",
    "nps": "latest NPS",
    "days_to_renewal": "days to renewal",
}


def popcount(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.int64)
    count = np.zeros_like(x)
    for bit in range(len(MODULES)):
        count += (x >> bit) & 1
    return count


@dataclass
class Windows:
    """The last WINDOW days of each signal, shape (accounts, WINDOW), oldest first,
    plus per-account state (seats, NPS, renewal)."""

    signals: dict[str, np.ndarray]
    seats_purchased: np.ndarray
    seats_used: np.ndarray
    nps: np.ndarray  # -1 when never answered
    days_to_renewal: np.ndarray


def compute(w: Windows) -> np.ndarray:
    """Feature matrix (accounts, len(FEATURES))."""
    s = w.signals
    seats = np.maximum(w.seats_purchased.astype(float), 1.0)

    def tail(name: str, days: int) -> np.ndarray:
        return s[name][:, -days:]

    active7 = tail("active_users", 7).mean(axis=1) / seats
    active30 = tail("active_users", 30).mean(axis=1) / seats
    logins7 = tail("logins", 7).sum(axis=1)
    logins30 = tail("logins", 30).sum(axis=1)
    logins90 = s["logins"].sum(axis=1)
    trend = (logins7 / 7 + 0.1) / (logins90 / WINDOW + 0.1)
    mods30 = popcount(np.bitwise_or.reduce(tail("modules", 30).astype(np.int64), axis=1)) / len(
        MODULES
    )
    mods_old = popcount(np.bitwise_or.reduce(s["modules"][:, :-30].astype(np.int64), axis=1)) / len(
        MODULES
    )
    sent_n30 = tail("sentiment_n", 30).sum(axis=1)
    sent30 = np.where(
        sent_n30 > 0, tail("sentiment_sum", 30).sum(axis=1) / np.maximum(sent_n30, 1), 0.0
    )
    sent_n90 = s["sentiment_n"].sum(axis=1)
    sent90 = np.where(sent_n90 > 0, s["sentiment_sum"].sum(axis=1) / np.maximum(sent_n90, 1), 0.0)
    return np.column_stack(
        [
            active7,
            active30,
            logins30 / seats,
            trend,
            mods30,
            mods30 - mods_old,
            tail("tickets", 30).sum(axis=1),
            s["p1"].sum(axis=1),
            sent30,
            sent30 - sent90,
            s["payment_failed"].sum(axis=1),
            w.seats_used / seats,
            w.nps.astype(float),
            w.days_to_renewal.astype(float),
        ]
    ).astype(np.float64)
