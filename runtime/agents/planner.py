"""The offline planner: deterministic candidate actions, no network.

An LLM planner (OpenAI/Anthropic/compatible) fills the same role behind the same
signature; this one is the embedded default and the tests' planner."""

from __future__ import annotations

from typing import Any

from autopilot.runtime.contracts.account import AccountSnapshot, Assessment, ContactInfo
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.optimizer.catalogue import cost_of, discount_entry, entry
from autopilot.tools.registry import Registry

# Who hears about what: the champion about adoption and risk, the economic buyer about money.
RESCUE_ROLES = ("champion", "admin", "executive_sponsor", "end_user")
OFFER_ROLES = ("executive_sponsor", "admin", "champion")


def pick_contact(account: AccountSnapshot, roles: tuple[str, ...]) -> ContactInfo | None:
    ranked = sorted(
        (c for c in account.contacts if c.role in roles), key=lambda c: (roles.index(c.role), c.id)
    )
    return ranked[0] if ranked else None


def _priced(
    name: str,
    account: AccountSnapshot,
    *,
    effect: str = "retention",
    discount_pct: float | None = None,
) -> dict[str, Any]:
    """Cost, expected effect, contact class and category of a catalogue action, for this
    account: the same figures the optimizer works with."""
    a = entry(name)
    uplift = (a.adoption if effect == "adoption" else a.retention).get(account.segment, 0.0)
    return {
        "expected_cost": cost_of(
            a, segment=account.segment, arr=account.arr, discount_pct=discount_pct
        ),
        "expected_uplift": uplift,
        "hours": a.hours,
        "high_touch": a.high_touch,
        "category": a.category,
    }


def plan(
    spec: AgentSpec,
    account: AccountSnapshot,
    assessment: Assessment,
    rejected: dict[str, str] | None = None,
) -> list[ProposedAction]:
    """Candidate actions, cheapest first. `rejected` maps a tool to the reason a person
    rejected it recently: that tool is not proposed again within the cool-down."""
    rejected = rejected or {}
    contact = pick_contact(account, RESCUE_ROLES)
    if contact is None:
        return []
    reasons = assessment.summary or "health below target"
    actions = []
    if "send_email" in spec.tools:
        actions.append(
            ProposedAction(
                tool="send_email",
                args={
                    "to": contact.email,
                    "subject": f"{account.name}: can we help you get more from the product?",
                    "body": (
                        f"Hi {contact.name},\n\nwe noticed a few things on {account.name}'s account "
                        f"({reasons}). Your CSM {account.owner_csm} would like to set up 30 minutes "
                        "to help your team. Just reply with a time that works.\n"
                    ),
                },
                reason=f"health {assessment.health:.1f}: {reasons}",
                **_priced("education_email", account),
            )
        )
    cfg = spec.planner
    buyer = pick_contact(account, OFFER_ROLES)
    # No commercial offer while the customer has an outage (the policy enforces it too).
    if (
        "send_offer" in spec.tools
        and account.arr >= cfg.offer_min_arr
        and buyer
        and not account.p1_open
    ):
        pct = cfg.high_risk_discount_pct if assessment.risk >= cfg.high_risk else cfg.discount_pct
        pct = min(pct, spec.limits.max_discount_pct)
        actions.append(
            ProposedAction(
                tool="send_offer",
                args={
                    "to": buyer.email,
                    "account_name": account.name,
                    "discount_pct": pct,
                    "valid_days": 30,
                    "term_months": 12,
                },
                reason=f"risk {assessment.risk:.2f} on ARR {account.arr:,.0f}: a renewal incentive",
                **_priced(discount_entry(pct).name, account, discount_pct=pct),
                discount_pct=pct,
            )
        )
    # The adoption path, cheapest first: a guide in the product, a CSM session, the CRM told.
    if "send_in_app_message" in spec.tools:
        actions.append(
            ProposedAction(
                tool="send_in_app_message",
                args={
                    "account_id": account.id,
                    "audience": "all",
                    "title": "Three steps to get more done",
                    "body": "A two-minute guide to the modules your team has not tried yet.",
                    "delay_minutes": 0,
                },
                reason=f"{account.active_users_30d} of {account.seats_purchased} seats active in 30 days",
                **_priced("in_app_guide", account, effect="adoption"),
            )
        )
    if "create_csm_task" in spec.tools:
        actions.append(
            ProposedAction(
                tool="create_csm_task",
                args={
                    "account_id": account.id,
                    "assignee": account.owner_csm,
                    "title": f"Adoption session with {account.name}",
                    "detail": reasons,
                    "due_days": 3,
                },
                reason="a 30-minute enablement session by the account's CSM",
                **_priced("csm_session", account, effect="adoption"),
            )
        )
    if "crm_update_field" in spec.tools:
        actions.append(
            ProposedAction(
                tool="crm_update_field",
                args={
                    "account_id": account.id,
                    "field": "adoption_status",
                    "value": "at risk: guide and session planned",
                },
                reason="keep the CRM's view of the account current",
                **_priced("crm_status", account),
            )
        )
    # The renewal forecast, from Health 2.0's churn risk, written where finance reads it.
    if "crm_write_forecast" in spec.tools:
        p_renew = round(1 - account.churn_risk, 3)
        actions.append(
            ProposedAction(
                tool="crm_write_forecast",
                args={
                    "account_id": account.id,
                    "renewal_probability": p_renew,
                    "forecast_arr": round(account.arr * p_renew, 2),
                },
                reason=f"renewal in {account.renewal_date}: probability {p_renew:.0%} from the health model",
                **_priced("renewal_forecast", account),
            )
        )
    actions = [a for a in actions if a.tool not in rejected]
    # Cheapest first: the chooser works through them in this order.
    return sorted(actions, key=lambda a: a.expected_cost)[: spec.limits.max_actions_per_run]


def apply_edit(
    tools: Registry, action: ProposedAction, args: dict[str, Any], account: AccountSnapshot
) -> ProposedAction:
    """The action with an approver's new arguments: only fields of the tool's schema,
    validated by it; the discount and the cost follow the arguments."""
    tool = tools.get(action.tool)
    allowed = set(tool.args_model.model_fields)
    if unknown := set(args) - allowed:
        raise ValueError(f"{action.tool} has no field(s) {sorted(unknown)}")
    merged = tool.args_model.model_validate({**action.args, **args}).model_dump(mode="json")
    update: dict[str, Any] = {"args": merged}
    if "discount_pct" in merged:
        update["discount_pct"] = float(merged["discount_pct"])
        update["expected_cost"] = round(account.arr * float(merged["discount_pct"]) / 100, 2)
    return action.model_copy(update=update)
