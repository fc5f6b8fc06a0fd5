"""An approver's edit of a proposed action: the playbook planned it (runtime/agents/
playbook.py); a person may change its arguments within the tool's schema."""

from __future__ import annotations

from typing import Any

from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.tools.registry import Registry


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
