"""A simple, explainable health score: 100 plus signed (negative) contributions, each with its reason.

The contributions sum exactly to the score (100 + their sum, clamped to 0..100), so the
explanation is the score, not a story told about it."""

from __future__ import annotations

from pydantic import BaseModel

from autopilot.runtime.contracts.account import AccountSnapshot


class Factor(BaseModel):
    name: str
    contribution: float
    reason: str


class Assessment(BaseModel):
    health: float
    risk: float
    factors: list[Factor]


def _factors(a: AccountSnapshot) -> list[Factor]:
    out: list[Factor] = []
    seat_util = a.seats_used / a.seats_purchased if a.seats_purchased else 0.0
    if seat_util < 0.6:
        out.append(Factor(name="seat_utilisation", contribution=-round((0.6 - seat_util) * 50, 1),
                          reason=f"{seat_util:.0%} of purchased seats in use"))
    active_ratio = a.active_users_30d / a.seats_purchased if a.seats_purchased else 0.0
    if active_ratio < 0.5:
        out.append(Factor(name="active_users", contribution=-round((0.5 - active_ratio) * 40, 1),
                          reason=f"{a.active_users_30d} active users in 30 days"))
    if a.p1_open:
        out.append(Factor(name="p1_tickets", contribution=-15.0 * min(a.p1_open, 2),
                          reason=f"{a.p1_open} open P1 ticket(s)"))
    if a.open_tickets > 3:
        out.append(Factor(name="ticket_load", contribution=-float(min(a.open_tickets - 3, 10)),
                          reason=f"{a.open_tickets} open tickets"))
    if a.nps is not None and a.nps <= 6:
        out.append(Factor(name="nps", contribution=-float((7 - a.nps) * 3),
                          reason=f"NPS {a.nps} (detractor)"))
    if a.sentiment < 0:
        out.append(Factor(name="sentiment", contribution=round(a.sentiment * 15, 1),
                          reason=f"negative sentiment {a.sentiment:+.2f}"))
    if a.payment_failures_90d:
        out.append(Factor(name="payment", contribution=-10.0 * min(a.payment_failures_90d, 2),
                          reason=f"{a.payment_failures_90d} failed payment(s) in 90 days"))
    return out


def assess(account: AccountSnapshot) -> Assessment:
    factors = _factors(account)
    raw = 100.0 + sum(f.contribution for f in factors)
    health = round(max(0.0, min(100.0, raw)), 1)
    factors.sort(key=lambda f: f.contribution)
    return Assessment(health=health, risk=round(1 - health / 100, 3), factors=factors)
