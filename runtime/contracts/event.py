"""EventIn: one signal about an account, as accepted by POST /events and imports."""

from __future__ import annotations

from datetime import UTC, datetime
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
]
Module = Literal["core", "reports", "automation", "integrations", "admin", "mobile"]


MAX_COUNT = 10_000_000  # users, seats, logins a day: far above any account, far below int64


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: Annotated[str, Field(min_length=1, max_length=64)]
    type: EventType
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
        field = REQUIRED_FIELD[self.type]
        if field is not None and getattr(self, field) is None:
            raise ValueError(f"field '{field}' is required for a '{self.type}' event")
        return self
