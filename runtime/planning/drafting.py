"""Drafts: the check that makes copy drafted by a model (in its tool calls) or edited by an
approver safe to send.

A drafted message must state the facts of its action and no others: the discount the
offer carries, the account's real dates and prices, the recipient's name, no address
but the recipient's and the CSM's, no secret. A mismatch is a deny (`draft.fact_mismatch`,
`draft.leak`), never a silent send; the planner sends it back to the model once and then
fails safe. The gate runs the same check on every action's text (runtime/planning/checks.py),
so an approver's edit or an offline template is held to it too."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.policy import Decision, Violation

FACT_MISMATCH = "draft.fact_mismatch"
LEAK = "draft.leak"
# The arguments that carry free copy (email body, meeting description, in-app text, task).
TEXT_ARGS = ("subject", "body", "description", "title", "detail")

_DISCOUNT = re.compile(
    r"(\d+(?:[.,]\d+)?)\s*(?:%|percent|prozent)\s*(?:off|discount|rabatt|nachlass)"
    r"|(?:discount|rabatt)\s+(?:of\s+|von\s+)?(\d+(?:[.,]\d+)?)\s*(?:%|percent)",
    re.IGNORECASE,
)
_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")
_MONEY = re.compile(
    r"(?:[$€£]\s*(\d[\d,]*(?:\.\d+)?)|(\d[\d,]*(?:\.\d+)?)\s*(?:USD|EUR|GBP|dollars|euros))",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_GREETING = re.compile(r"^\s*(?:hi|hello|dear|hallo|guten tag)\s+([^,\n]+),", re.IGNORECASE)
# Credentials and keys of the usual shapes: nothing of the kind belongs in customer copy.
_SECRET = re.compile(
    r"\bsk-[A-Za-z0-9_-]{8,}|\bAKIA[0-9A-Z]{12,}|\bghp_[A-Za-z0-9]{20,}|\bxox[bap]-[\w-]{10,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----|\b(?:api[_ -]?key|password|secret)\s*[:=]",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Facts:
    """What a message about this action may state."""

    discount_pct: float
    recipient: str | None
    recipient_name: str | None
    account_name: str
    dates: frozenset[str]
    amounts: frozenset[float]
    addresses: frozenset[str]  # addresses a message may show (recipient, CSM)


def facts_for(
    action: ProposedAction, account: AccountSnapshot, today: date, csm_email: str = ""
) -> Facts:
    to = action.args.get("to")
    contact = next((c for c in account.contacts if c.email == to), None)
    arg_dates = {m for v in action.args.values() if isinstance(v, str) for m in _DATE.findall(v)}
    dates = {account.renewal_date.isoformat(), today.isoformat(), *arg_dates}
    dates |= {(today + timedelta(days=n)).isoformat() for n in (1, 2, 3, 7, 14, 30)}
    pct = action.discount_pct
    amounts = {round(account.arr, 2), round(account.arr * (1 - pct / 100), 2)}
    amounts.add(round(account.arr * pct / 100, 2))
    return Facts(
        discount_pct=pct,
        recipient=to if isinstance(to, str) else None,
        recipient_name=contact.name if contact else None,
        account_name=account.name,
        dates=frozenset(dates),
        amounts=frozenset(amounts),
        addresses=frozenset(a.lower() for a in (to, csm_email) if isinstance(a, str) and a),
    )


def _num(raw: str) -> float:
    return (
        float(raw.replace(",", ""))
        if raw.count(",") != 1 or "." in raw
        else float(raw.replace(",", "."))
    )


def check_text(text: str, facts: Facts, *, field: str) -> list[Violation]:
    """What in one drafted text contradicts the action's facts or leaks what it must not."""
    out: list[Violation] = []
    for m in _DISCOUNT.finditer(text):
        pct = _num(m.group(1) or m.group(2))
        if abs(pct - facts.discount_pct) > 1e-6:
            out.append(
                Violation(
                    code=FACT_MISMATCH,
                    msg=f"{field} offers {pct:g} % but the action's discount is {facts.discount_pct:g} %",
                )
            )
    for d in _DATE.findall(text):
        if d not in facts.dates:
            out.append(
                Violation(
                    code=FACT_MISMATCH,
                    msg=f"{field} states the date {d}, not a fact of this account",
                )
            )
    for m in _MONEY.finditer(text):
        amount = round(_num(m.group(1) or m.group(2)), 2)
        if not any(abs(amount - a) < 0.51 for a in facts.amounts):
            out.append(
                Violation(
                    code=FACT_MISMATCH,
                    msg=f"{field} states the amount {amount:g}, not a price of this account",
                )
            )
    greeting = _GREETING.match(text)
    if greeting and facts.recipient_name is not None:
        named = greeting.group(1).strip().lower()
        if named not in facts.recipient_name.lower():
            out.append(
                Violation(
                    code=FACT_MISMATCH, msg=f"{field} greets someone who is not the recipient"
                )
            )
    for addr in _EMAIL.findall(text):
        if addr.lower() not in facts.addresses:
            out.append(
                Violation(
                    code=LEAK,
                    msg=f"{field} contains an address that is not the recipient's or the CSM's",
                )
            )
    if _SECRET.search(text):
        out.append(Violation(code=LEAK, msg=f"{field} contains something shaped like a credential"))
    return out


def check(
    action: ProposedAction, account: AccountSnapshot, today: date, csm_email: str = ""
) -> list[Violation]:
    """Every text argument of the action against its facts; plus the facts in the
    arguments themselves (an offer names this account)."""
    facts = facts_for(action, account, today, csm_email)
    out: list[Violation] = []
    for name in TEXT_ARGS:
        value = action.args.get(name)
        if isinstance(value, str):
            out += check_text(value, facts, field=name)
    named = action.args.get("account_name")
    if isinstance(named, str) and named != account.name:
        out.append(Violation(code=FACT_MISMATCH, msg="account_name is not this account's name"))
    account_id = action.args.get("account_id")
    if isinstance(account_id, str) and account_id != account.id:
        out.append(Violation(code=FACT_MISMATCH, msg="account_id is not this account"))
    return out


def decision(
    action: ProposedAction, account: AccountSnapshot, today: date, csm_email: str = ""
) -> Decision | None:
    """For the gate node: a deny when the action's drafts contradict its facts (also after
    an approver's edit), else None (the policy decides)."""
    found = check(action, account, today, csm_email)
    if not found:
        return None
    return Decision(allow=False, require_approval=False, deny=found)
