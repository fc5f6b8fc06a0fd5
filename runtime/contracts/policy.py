"""PolicyInput and Decision: the contract of data.autopilot.decision.

PolicyInput is the JSON schema of what the gate sends (policies/input.schema.json
is generated from it); it is validated before every evaluation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ActionKind = Literal[
    "email",
    "offer",
    "in_app",
    "meeting",
    "call",
    "task",
    "crm_update",
    "notice",
    "notification",
    "compensation",
    "read",
]
ActionCategory = Literal[
    "rescue", "adoption", "commercial", "marketing", "operational", "compliance"
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecipientIn(_In):
    id: str
    email: str
    role: str
    opted_out: bool
    # CPPA ADMT opt-out; a default so that decisions logged before it existed still replay.
    admt_opted_out: bool = False
    notice_on_record: bool
    local_hour: int = Field(ge=0, le=23, description="the hour now in the recipient's time zone")
    hours_since_last_contact: float | None = Field(None, ge=0)


class ActionIn(_In):
    tool: str
    kind: ActionKind
    category: ActionCategory
    args: dict[str, Any]
    discount_pct: float = Field(ge=0, le=100)
    expected_cost: float = Field(ge=0)
    high_touch: bool = False
    hours: float = Field(0, ge=0)
    significant: bool = False
    contract_change: bool = False
    data_region: str
    recipient: RecipientIn | None = None


class AccountIn(_In):
    id: str
    segment: str
    region: str
    arr: float = Field(ge=0)
    annual_cost_to_serve: float = Field(ge=0)
    p1_open: int = Field(ge=0)


class AgentIn(_In):
    name: str
    tools: list[str]


class ActorIn(_In):
    type: Literal["agent", "user", "system"]
    id: str


class LedgerIn(_In):
    account_spend_quarter: float = Field(ge=0)
    segment_spend_quarter: float = Field(ge=0)
    high_touch_contacts_quarter: int = Field(ge=0)
    active_discount_pct: float = Field(ge=0, le=100)


class PolicyInput(_In):
    action: ActionIn
    account: AccountIn
    agent: AgentIn
    actor: ActorIn
    ledger: LedgerIn


class Violation(BaseModel):
    code: str
    msg: str


class RequiredApproval(BaseModel):
    role: str
    reason: str
    sla_hours: float | None = None


class Decision(BaseModel):
    allow: bool
    require_approval: bool
    deny: list[Violation] = []
    approval: list[RequiredApproval] = []
    obligations: list[dict[str, Any]] = []
    bundle_hash: str = ""
    input_hash: str = ""
    # The account supervisor's settlements with other agents' actions (not the policy's).
    conflicts: list[dict[str, Any]] = []

    @property
    def outcome(self) -> str:
        if not self.allow:
            return "deny"
        return "require_approval" if self.require_approval else "allow"

    @property
    def roles(self) -> list[str]:
        return sorted({a.role for a in self.approval})

    @classmethod
    def fail_closed(
        cls, code: str, msg: str, *, bundle_hash: str = "", input_hash: str = ""
    ) -> Decision:
        return cls(
            allow=False,
            require_approval=False,
            deny=[Violation(code=code, msg=msg)],
            bundle_hash=bundle_hash,
            input_hash=input_hash,
        )
