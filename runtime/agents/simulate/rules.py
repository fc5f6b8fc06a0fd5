"""The rule playbook of today's CS suites, the simulation's comparison: health < 50 → a
CSM call, renewal within 60 days → a renewal email, seats ≥ 95 % used → an AE task
(each rule at most once per account per 30 days), priced from the catalogue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from autopilot.runtime.agents.playbook import pick_contact
from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.optimizer.catalogue import cost_of, entry

RULE_COOLDOWN_DAYS = 30
RULES = "rule_playbook"


@dataclass(frozen=True)
class Rule:
    id: str
    action: str  # the catalogue action
    holds: Callable[[AccountSnapshot, date], bool]


def _saturated(a: AccountSnapshot, _today: date) -> bool:
    return a.seats_used / max(a.seats_purchased, 1) >= 0.95


RULE_BOOK = (
    Rule("health_below_50", "csm_call", lambda a, _d: a.health < 50.0),
    Rule(
        "renewal_within_60d", "renewal_check_in", lambda a, d: 0 < (a.renewal_date - d).days <= 60
    ),
    Rule("seats_95pct", "ae_task", _saturated),
)
RULE_ROLES = ["champion", "admin", "executive_sponsor"]


def rule_spec() -> AgentSpec:
    """The rule playbook as the gate sees an agent: its grants, no limits of its own,
    on autopilot (a CTA goes straight to the CSM, as in today's suites)."""
    return AgentSpec.model_validate(
        {
            "name": RULES,
            "description": "Rules in the style of today's CS suites, for comparison.",
            "goal": {"description": "none", "metric": "none"},
            "schedule": "0 6 * * *",
            "autonomy": "autopilot",
            "tools": ["create_csm_task", "send_email"],
            "scopes": ["task:create", "email:send"],
            "playbook": [{"id": r.id, "do": r.action} for r in RULE_BOOK],
        }
    )


def rule_action(rule: Rule, a: AccountSnapshot, today: date) -> ProposedAction | None:
    option = entry(rule.action)
    if option.tool == "send_email":
        contact = pick_contact(a, RULE_ROLES)
        if contact is None:
            return None
        args: dict[str, Any] = {
            "to": contact.email,
            "subject": f"{a.name}: your renewal on {a.renewal_date}",
            "body": f"Hello {contact.name}, your renewal is coming up on {a.renewal_date}.",
        }
    else:
        args = {
            "account_id": a.id,
            "assignee": a.owner_csm,
            "title": f"{rule.id.replace('_', ' ')}: {option.name.replace('_', ' ')} with {a.name}",
            "detail": f"health {a.health:.0f}, {a.seats_used}/{a.seats_purchased} seats, "
            f"renewal {a.renewal_date}",
            "due_days": 3,
        }
    return ProposedAction(
        tool=option.tool,
        args=args,
        reason=f"rule {rule.id}",
        expected_cost=cost_of(option, segment=a.segment, arr=a.arr),
        expected_uplift=min(1.0, option.retention.get(a.segment, 0.0)),
        category=option.category,  # type: ignore[arg-type]
        high_touch=option.high_touch,
        hours=option.hours,
        step=rule.id,
        option=option.name,
    )
