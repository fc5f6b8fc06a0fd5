"""ProposedAction: one candidate action made by the planner."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from autopilot.runtime.hashing import sha256_hex


class ProposedAction(BaseModel):
    model_config = ConfigDict(frozen=True)

    tool: str
    args: dict[str, Any]
    reason: str
    expected_cost: float = Field(ge=0, description="expected cost to serve, in account currency")
    expected_uplift: float = Field(ge=0, le=1, description="expected reduction of churn risk")
    discount_pct: float = Field(0, ge=0, le=100)

    @property
    def payload_hash(self) -> str:
        return sha256_hex({"tool": self.tool, "args": self.args, "discount_pct": self.discount_pct})
