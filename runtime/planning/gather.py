"""What the plan node hands the LLM planner besides the snapshot: the free text people
wrote about the account (from event payloads: notes, inbound emails, tickets, CRM
fields) and knowledge retrieved for the situation. All of it becomes DataText, which
the prompt fences as data; none of it is trusted."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.account import AccountSnapshot, Assessment
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.kb import store as kb
from autopilot.runtime.planning.planner import FAIL_SAFE
from autopilot.runtime.planning.prompt import DataText, Source

# Payload keys that carry free text, and the place each stands for.
TEXT_KEYS: dict[str, Source] = {
    "note": "account_note",
    "body": "inbound_email",
    "subject": "inbound_email",
    "ticket_text": "ticket",
    "description": "ticket",
}
MAX_CHARS = 4000  # per text: a long thread is cut, not allowed to crowd out the situation


def texts_from_events(events: Iterable[tuple[str, Mapping[str, Any]]]) -> list[DataText]:
    """(event type, payload) pairs → the free texts in them; CRM custom fields are the
    payload's `fields` mapping."""
    out: list[DataText] = []
    for kind, payload in events:
        source: Source
        for key, source in TEXT_KEYS.items():
            value = payload.get(key)
            if isinstance(value, str) and value.strip():
                if kind.startswith("ticket"):
                    source = "ticket"
                out.append(DataText(source, value[:MAX_CHARS], ref=f"{kind}.{key}"))
        fields = payload.get("fields")
        if isinstance(fields, Mapping):
            for name, value in fields.items():  # pyright: ignore[reportUnknownVariableType]
                if isinstance(value, str) and value.strip():
                    out.append(DataText("crm_field", value[:MAX_CHARS], ref=str(name)))  # pyright: ignore[reportUnknownArgumentType]
    return out


def knowledge_for(
    settings: Settings, spec: AgentSpec, assessment: Assessment, k: int = 3
) -> list[DataText]:
    """Knowledge retrieved for the agent's goal and the account's weakest factors."""
    query = spec.goal.description + ". " + "; ".join(r.label for r in assessment.reasons[:3])
    return [
        DataText("knowledge", str(hit["text"])[:MAX_CHARS], ref=str(hit.get("source", "")))
        for hit in kb.search(settings, query, k)
    ]


def is_fail_safe(action: ProposedAction, account: AccountSnapshot) -> bool:
    """The exact review task `review_action` makes of a plan the model could not give."""
    return (
        action.option == FAIL_SAFE
        and action.step == FAIL_SAFE
        and action.tool == "create_csm_task"
        and action.args.get("account_id") == account.id
        and not action.discount_pct
        and not action.expected_cost
    )
