"""EventIn: one signal about an account, as accepted by POST /events and imports."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The payload field each event type must carry.
REQUIRED_FIELD: dict[str, str | None] = {
    "login": None,
    "usage_snapshot": "active_users",
    "ticket_opened": "priority",
    "ticket_closed": "priority",
    "nps": "score",
    "sentiment": "sentiment",
    "payment_failed": "amount",
    "feature_use": "module",
    "invoice": "amount",
    "contract_signed": "amount",
    "renewed": None,
    "expanded": "amount",
    "churned": None,
    # What people do, that agents watch: a reply to an agent's email, a CSM taking the
    # account over (agents step back), a customer declining an expansion proposal.
    "email_reply": None,
    "csm_takeover": None,
    "expansion_declined": None,
}

# What a subscription or contract event must carry (besides the day it happened): they
# write `Subscription` rows (see `accounts.subscription_events`), not a day's rollup,
# and are not history-mapping signals (a subscriptions history is its own file).
SUBSCRIPTION_FIELDS: dict[str, tuple[str, ...]] = {
    "subscription.started": ("product", "mrr"),
    "subscription.changed": ("product",),
    "subscription.cancelled": ("product",),
    "contract.renewed": (),
}
BillingPeriod = Literal[1, 3, 6, 12, 24, 36]  # months between renewals

EventType = Literal[
    "login",
    "usage_snapshot",
    "ticket_opened",
    "ticket_closed",
    "nps",
    "sentiment",
    "payment_failed",
    "feature_use",
    "invoice",
    "contract_signed",
    "renewed",
    "expanded",
    "churned",
    "email_reply",
    "csm_takeover",
    "expansion_declined",
    "subscription.started",
    "subscription.changed",
    "subscription.cancelled",
    "contract.renewed",
]
Module = Literal["core", "reports", "automation", "integrations", "admin", "mobile"]


MAX_COUNT = 10_000_000  # users, seats, logins a day: far above any account, far below int64


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: Annotated[str, Field(min_length=1, max_length=64)]
    type: EventType
    # The source's id for the event: a re-delivery with the same id is stored once.
    id: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    # When it happened; without a time zone it is read as UTC. Absent: now. More than a
    # day old: history (folded and scored, never a trigger). Years 2000-2100 only.
    occurred_at: datetime | None = None
    # Typed payload fields; which ones apply depends on `type`.
    active_users: int | None = Field(None, ge=0, le=MAX_COUNT)
    seats_used: int | None = Field(None, ge=0, le=MAX_COUNT)
    logins: int | None = Field(None, ge=0, le=MAX_COUNT)
    priority: Literal["P1", "P2", "P3", "P4"] | None = None
    score: int | None = Field(None, ge=0, le=10, description="NPS score 0-10")
    sentiment: float | None = Field(None, ge=-1, le=1, allow_inf_nan=False)
    amount: float | None = Field(
        None,
        ge=0,
        le=1e12,
        allow_inf_nan=False,
        description="payment, invoice, or contract/expansion ARR",
    )
    module: Module | None = None
    seats: int | None = Field(
        None, ge=0, le=MAX_COUNT, description="seats added by an expansion or bought in a contract"
    )
    # Subscription and contract events (`SUBSCRIPTION_FIELDS`).
    product: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    mrr: float | None = Field(
        None, ge=0, le=1e12, allow_inf_nan=False, description="monthly recurring revenue"
    )
    quantity: int | None = Field(None, ge=0, le=MAX_COUNT, description="seats subscribed")
    billing_period: BillingPeriod | None = Field(None, description="months between renewals")
    ends_on: date | None = Field(
        None, description="a subscription's last day + 1 (a cancellation, a contract's new end)"
    )

    @field_validator("occurred_at")
    @classmethod
    def _utc_in_range(cls, at: datetime | None) -> datetime | None:
        if at is None:
            return None
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        if not 2000 <= at.astimezone(UTC).year <= 2100:
            raise ValueError("occurred_at must be between the years 2000 and 2100")
        return at

    @model_validator(mode="after")
    def _payload_matches_type(self) -> EventIn:
        needed = SUBSCRIPTION_FIELDS.get(self.type) or (REQUIRED_FIELD.get(self.type),)
        for field in needed:
            if field is not None and getattr(self, field) is None:
                raise ValueError(f"field '{field}' is required for a '{self.type}' event")
        if self.type == "subscription.changed" and (
            self.mrr is None and self.quantity is None and self.billing_period is None
        ):
            raise ValueError(
                "field 'mrr', 'quantity' or 'billing_period' is required for a "
                "'subscription.changed' event"
            )
        return self
