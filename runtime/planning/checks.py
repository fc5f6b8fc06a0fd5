"""What the gate adds to the policy's decision for planned text: only ever stricter.

- A drafted text that contradicts its action's facts (discount, dates, amounts, names,
  the account) or carries an address or a secret it should not is denied
  (`draft.fact_mismatch`, `draft.leak`): a model's draft, or an approver's edit.
- The review task a failed LLM plan becomes waits for the account's CSM: the run fails
  safe into the inbox, with the reason."""

from __future__ import annotations

from datetime import date

from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.policy import Decision, RequiredApproval
from autopilot.runtime.planning import drafting
from autopilot.runtime.planning.gather import is_fail_safe


def tighten(
    decision: Decision,
    *,
    action: ProposedAction,
    account: AccountSnapshot,
    today: date,
    csm_email: str = "",
) -> Decision:
    if not decision.allow:
        return decision
    found = drafting.check(action, account, today, csm_email)
    if found:
        return decision.model_copy(
            update={"allow": False, "require_approval": False, "deny": found}
        )
    if is_fail_safe(action, account) and not decision.require_approval:
        review = RequiredApproval(role="csm", reason="the LLM planner's answer was refused twice")
        return decision.model_copy(
            update={"require_approval": True, "approval": [*decision.approval, review]}
        )
    return decision
