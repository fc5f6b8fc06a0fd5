"""AgentSpec: the typed form of agents/<name>.yaml (its JSON Schema: agents/agent.schema.json).

An agent is a playbook: steps drawn from the action catalogue (or any granted tool),
waits, conditions re-evaluated after a wait, exit criteria and a measurable goal. The
planner knows no tool by name: everything an agent does is written here."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import cel
from cronsim import CronSim, CronSimError
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_WAIT_S = 400 * 86400  # a wait longer than a renewal cycle is a typo


def duration_s(text: str) -> float:
    """Seconds in a duration such as `3d`, `12h`, `30m`, `2w`."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise ValueError(f"'{text}' is not a duration such as 30m, 12h, 3d or 2w")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def _cel(expr: str, what: str) -> str:
    try:
        cel.compile(expr)
    except ValueError as err:
        raise ValueError(f"{what} is not valid CEL: {err}") from None
    return expr


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(_Strict):
    """The agent's own limits. They only tighten the global policy: the gate applies
    the stricter of the two (a looser value here changes nothing)."""

    max_actions_per_run: int = Field(
        default=3, ge=1, le=10, description="actions per playbook stretch (between waits)"
    )
    approval_timeout_hours: float = Field(default=72, gt=0)
    max_discount_pct: float = Field(
        default=25, ge=0, le=100, description="the agent's discount cap (the segment's applies too)"
    )
    budget_per_account: float | None = Field(
        default=None,
        ge=0,
        description="what this agent may spend on one account per quarter (expected cost)",
    )
    rejection_cooldown_days: float = Field(
        default=14, ge=0, description="a rejected action is not re-proposed meanwhile"
    )


class Approvals(_Strict):
    """Approval overrides: only ever stricter than the policy's."""

    always: list[str] = Field(
        default_factory=list, description="step ids, catalogue actions or tools a person approves"
    )
    above_cost: float | None = Field(
        default=None, ge=0, description="a person approves any action whose cost is above this"
    )
    role: str = Field(default="csm", pattern=r"^[a-z_]+$", description="who approves them")


class OfflinePlanner(_Strict):
    """`offline`: the playbook as written, the optimizer choosing among a step's options.
    No model, no network."""

    kind: Literal["offline"] = "offline"


class LlmPlanner(_Strict):
    """`llm`: a model plans with the same goal, steps and grants (runtime/llm). Unset
    fields take the settings' defaults (AUTOPILOT_LLM_*); keys are never written here."""

    kind: Literal["llm"]
    provider: Literal["openai", "anthropic", "openai_compatible"] | None = Field(
        default=None, description="empty: the settings' llm_provider"
    )
    model: str | None = Field(default=None, min_length=1, description="empty: llm_model")
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=1024, ge=1, le=200_000)
    base_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+",
        description="an OpenAI-compatible endpoint (vLLM, Ollama, Azure); empty: the provider's",
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="the environment variable holding the key (never the key itself)",
    )
    model_budget_per_quarter: float | None = Field(
        default=None, ge=0, description="USD of model calls this agent may spend per quarter"
    )


def _planner_kind(v: Any) -> str:
    if isinstance(v, dict):
        return str(v.get("kind", "offline"))  # type: ignore[union-attr]
    return str(getattr(v, "kind", "offline"))


PlannerSettings = Annotated[
    Annotated[OfflinePlanner, Tag("offline")] | Annotated[LlmPlanner, Tag("llm")],
    Discriminator(
        _planner_kind,
        custom_error_type="planner_kind",
        custom_error_message="planner.kind is `offline` or `llm`",
    ),
]


GoalMetric = Literal[
    "renewal_probability", "adoption", "seat_utilisation", "expansion_answered", "none"
]


class Goal(_Strict):
    """What the agent is for, measurably: `metric` ≥ `target` (by `within_days` of the
    run's start, or by the renewal date for renewal_probability)."""

    description: str = Field(min_length=1)
    metric: GoalMetric = Field(
        description=(
            "renewal_probability = 1 - Health 2.0 churn risk; adoption = 30-day active "
            "users / seats; seat_utilisation = seats used / seats; expansion_answered = "
            "an `expanded` or `expansion_declined` event since the run began"
        )
    )
    target: float = Field(default=1.0, ge=0, le=1)
    within_days: int | None = Field(default=None, ge=1, le=730)


class Audience(_Strict):
    segments: list[str] = Field(default_factory=list, description="empty: every segment")
    tiers: list[str] = Field(default_factory=list, description="empty: every tier")
    filter: str | None = Field(default=None, description="CEL over `account`")

    @field_validator("filter")
    @classmethod
    def _compiles(cls, expr: str | None) -> str | None:
        return None if expr is None else _cel(expr, "audience.filter")


class Exit(_Strict):
    """When the run stops, checked before every playbook stretch."""

    goal_met: bool = True
    churned: bool = True
    human_took_over: bool = Field(
        default=True, description="a `csm_takeover` event arrived since the run began"
    )
    when: str | None = Field(default=None, description="CEL over `account` and `run`")

    @field_validator("when")
    @classmethod
    def _compiles(cls, expr: str | None) -> str | None:
        return None if expr is None else _cel(expr, "exit.when")


class ActionStep(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    do: list[str] = Field(
        min_length=1,
        description=(
            "a catalogue action or a granted tool; several: the optimizer chooses the "
            "cheapest mix expected to reach the goal within budget and contact limits"
        ),
    )
    when: str | None = Field(
        default=None, description="CEL over `account`, `event` and `run`, evaluated at the step"
    )
    to: list[str] = Field(
        default_factory=list,
        description="contact roles in order of preference: the first found is `contact`",
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="the tool's arguments; strings are Jinja templates"
    )
    templates: dict[str, str] = Field(
        default_factory=dict, description="argument -> template file beside the YAML"
    )
    reason: str = Field(default="", description="why (a Jinja template); shown in the inbox")

    @field_validator("do", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("when")
    @classmethod
    def _compiles(cls, expr: str | None) -> str | None:
        return None if expr is None else _cel(expr, "when")


class WaitStep(_Strict):
    wait: str = Field(description="30m, 12h, 3d, 2w: the run sleeps, then looks again")
    id: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")

    @field_validator("wait")
    @classmethod
    def _duration(cls, v: str) -> str:
        if not 0 < duration_s(v) <= MAX_WAIT_S:
            raise ValueError("a wait is between 1s and 400d")
        return v

    @property
    def seconds(self) -> float:
        return duration_s(self.wait)


def _step_kind(v: Any) -> str:
    if isinstance(v, dict):
        return "wait" if "wait" in v else "action"
    return "wait" if isinstance(v, WaitStep) else "action"


Step = Annotated[
    Annotated[ActionStep, Tag("action")] | Annotated[WaitStep, Tag("wait")],
    Discriminator(_step_kind),
]


class CatalogueOverride(_Strict):
    """A per-agent change to a catalogue action's price or expected effect."""

    fixed_cost: float | None = Field(default=None, ge=0)
    hours: float | None = Field(default=None, ge=0)
    effect: float | None = Field(
        default=None, ge=0, le=1, description="expected effect toward the goal, every segment"
    )


class AgentSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str = Field(min_length=1)
    goal: Goal
    audience: Audience = Audience()
    trigger: str | None = Field(
        default=None, description="CEL over `account` and `event`: starts a run on an event"
    )
    schedule: str | None = Field(
        default=None,
        description="cron (UTC): the sweep evaluates the audience and trigger then",
    )
    priority: int = Field(
        default=50, ge=0, le=1000, description="who wins a contact or budget on one account"
    )
    autonomy: Literal["suggest", "approve", "autopilot"] = Field(
        default="approve",
        description=(
            "suggest: every action to the inbox; approve: as the policy says, plus this "
            "agent's approval overrides; autopilot: as the policy says"
        ),
    )
    planner: PlannerSettings = OfflinePlanner()
    tools: list[str] = Field(min_length=1, description="the tools this agent is granted")
    scopes: list[str] = Field(
        default_factory=list,
        description="the scopes granted; every listed tool's scopes must be among them",
    )
    limits: Limits = Limits()
    approvals: Approvals = Approvals()
    catalogue: dict[str, CatalogueOverride] = Field(default_factory=dict)
    playbook: list[Step] = Field(min_length=1)
    exit: Exit = Exit()
    # Filled by the loader from the files beside the YAML (name[.lang] -> Jinja source),
    # so the spec's hash pins the copy a run sends.
    template_sources: dict[str, str] = Field(default_factory=dict)

    @field_validator("trigger")
    @classmethod
    def _trigger_compiles(cls, expr: str | None) -> str | None:
        return None if expr is None else _cel(expr, "trigger")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, expr: str | None) -> str | None:
        if expr is None:
            return None
        try:
            CronSim(expr, datetime(2030, 1, 1))
        except CronSimError as err:
            raise ValueError(f"schedule is not a cron expression: {err}") from None
        if len(expr.split()) != 5:
            raise ValueError(
                "schedule is a five-field cron expression (minute hour day month weekday)"
            )
        return expr

    @model_validator(mode="after")
    def _coherent(self) -> AgentSpec:
        if self.trigger is None and self.schedule is None:
            raise ValueError("an agent needs a `trigger`, a `schedule`, or both")
        ids = [s.id for s in self.playbook if s.id]
        if dup := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"playbook step ids must be unique: {dup}")
        if not any(isinstance(s, ActionStep) for s in self.playbook):
            raise ValueError("a playbook needs at least one action step")
        if isinstance(self.planner, LlmPlanner) and "create_csm_task" not in self.tools:
            # A plan the model cannot give (or cannot afford) becomes a task for the CSM.
            raise ValueError("planner: an LLM-planned agent must be granted create_csm_task")
        return self

    @property
    def actions(self) -> list[ActionStep]:
        return [s for s in self.playbook if isinstance(s, ActionStep)]
