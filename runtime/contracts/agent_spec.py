"""AgentSpec: the typed form of agents/<name>.yaml."""

from __future__ import annotations

from typing import Literal

import cel
from pydantic import BaseModel, ConfigDict, Field, field_validator


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_actions_per_run: int = Field(default=3, ge=1, le=10)
    approval_timeout_hours: float = Field(default=72, gt=0)
    max_discount_pct: float = Field(default=25, ge=0, le=100)
    rejection_cooldown_days: float = Field(
        default=14, ge=0, description="a rejected tool is not re-proposed meanwhile"
    )


class PlannerSettings(BaseModel):
    """Knobs of the offline planner; an LLM planner reads the same goal and tools."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["offline"] = "offline"
    offer_min_arr: float = Field(default=50_000, ge=0)
    high_risk: float = Field(default=0.7, ge=0, le=1)
    discount_pct: float = Field(default=10, ge=0, le=100)
    high_risk_discount_pct: float = Field(default=25, ge=0, le=100)


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    trigger: str = Field(min_length=1, description="CEL expression over `account` and `event`")
    goal: str
    tools: list[str] = Field(min_length=1, description="the tools this agent is granted")
    scopes: list[str] = Field(
        default_factory=list,
        description="the scopes granted; every listed tool's scopes must be among them",
    )
    limits: Limits = Limits()
    planner: PlannerSettings = PlannerSettings()

    @field_validator("trigger")
    @classmethod
    def _trigger_compiles(cls, expr: str) -> str:
        try:
            cel.compile(expr)
        except ValueError as err:
            raise ValueError(f"trigger is not valid CEL: {err}") from None
        return expr
