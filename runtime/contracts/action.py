"""ProposedAction: one candidate action made by the planner."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.contracts.policy import ActionCategory


class ProposedAction(BaseModel):
    model_config = ConfigDict(frozen=True)

    tool: str
    args: dict[str, Any]
    reason: str
    expected_cost: float = Field(ge=0, description="expected cost to serve, in account currency")
    expected_uplift: float = Field(ge=0, le=1, description="expected reduction of churn risk")
    discount_pct: float = Field(default=0, ge=0, le=100)
    category: ActionCategory = "rescue"
    high_touch: bool = False
    hours: float = Field(default=0, ge=0)
    contract_change: bool = False
    step: str = Field(default="", description="the playbook step it comes from")
    option: str = Field(default="", description="the catalogue action (or tool) it is")

    @property
    def payload_hash(self) -> str:
        return sha256_hex(
            self.model_dump(
                mode="json",
                include={"tool", "args", "discount_pct", "high_touch", "hours", "contract_change"},
            )
        )
