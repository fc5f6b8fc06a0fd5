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
    language: str = "en"  # the template variant a message to them uses, if the agent has it
    opted_out: bool = False
    notice_at: datetime | None = None


class HealthReason(BaseModel):
    """One Health 2.0 factor that pulls the score down: what it is, its value, its points."""

    model_config = ConfigDict(frozen=True)

    label: str
    value: float
    contribution: float


class Assessment(BaseModel):
    """What the agent makes of the account: Health 2.0's figure and its reasons."""

    health: float
    risk: float
    reasons: list[HealthReason]

    @property
    def summary(self) -> str:
        return "; ".join(f"{r.label} {r.value:g} ({r.contribution:+.1f})" for r in self.reasons)


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
    tier: str = "standard"
    status: str = "active"  # active | churned
    # Health 2.0, the one health: 0-100, and the model's probability of churn within its
    # horizon; triggers may use either, e.g. `account.health < 50.0` (= churn_risk > 0.5).
    health: float
    churn_risk: float = 0.0  # a default: runs recorded before it existed still replay
    health_reasons: list[HealthReason] = []
    contacts: list[ContactInfo] = []
    # Significant automated decisions on the account without an up-to-date ADMT record
    # (runtime/accounts/compliance_due.py): the Compliance agent is due while any are.
    decisions_to_record: int = 0  # a default: runs recorded before it existed still replay
    opt_outs_lifted: int = 0  # contacts who opted back in since compliance saw them opt out

    def as_cel(self, today: date) -> dict[str, object]:
        """The account as the trigger language sees it (JSON values, plus derived fields)."""
        data = self.model_dump(mode="json", exclude={"contacts", "health_reasons"})
        data["days_to_renewal"] = (self.renewal_date - today).days
        return data
