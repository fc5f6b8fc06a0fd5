"""AccountSnapshot: what the store knows about an account right now."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict


class ContactInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    email: str
    role: str
    timezone: str = "UTC"
    opted_out: bool = False
    notice_at: datetime | None = None


class AccountSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    segment: str
    region: str
    arr: float
    annual_cost_to_serve: float = 0.0
    seats_purchased: int
    seats_used: int
    active_users_30d: int
    logins_30d: int
    open_tickets: int
    p1_open: int
    nps: int | None
    sentiment: float
    payment_failures_90d: int
    renewal_date: date
    owner_csm: str
    health: float
    # Health 2.0: the model's churn probability within its horizon (0 until first scored);
    # triggers may use it, e.g. `account.churn_risk >= 0.65`.
    churn_risk: float = 0.0
    contacts: list[ContactInfo] = []

    def as_cel(self, today: date) -> dict[str, object]:
        """The account as the trigger language sees it (JSON values, plus derived fields)."""
        data = self.model_dump(mode="json", exclude={"contacts"})
        data["days_to_renewal"] = (self.renewal_date - today).days
        return data
