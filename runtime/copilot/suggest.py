"""The Copilot's suggestions: proposed actions of the `copilot` agent (agents/copilot.yaml),
planned by the same playbook engine the agent's run uses, so the card a CSM sees is the
action the run will propose. A suggestion's id is stable for an account and a kind; its
payload hash pins what the card showed. "Do it" re-derives the suggestion from the id
on the server: the client's copy of the payload is never used."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from autopilot.runtime.agents import playbook
from autopilot.runtime.agents.playbook import Room, RunFacts
from autopilot.runtime.contracts.account import AccountSnapshot, Assessment
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.hashing import sha256_hex

AGENT = "copilot"
EVENT_TYPE = "copilot"  # the event "do it" stores: the agent's trigger, never POST /events'
Kind = Literal["email_champion", "csm_task", "in_app_nudge"]
KINDS: tuple[Kind, ...] = ("email_champion", "csm_task", "in_app_nudge")
TITLES: dict[str, str] = {
    "email_champion": "Email the champion",
    "csm_task": "Create a follow-up task for you",
    "in_app_nudge": "Send an in-app nudge",
}


@dataclass(frozen=True)
class Suggestion:
    id: str
    kind: Kind
    title: str
    action: ProposedAction

    @property
    def payload_hash(self) -> str:
        return self.action.payload_hash

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "title": self.title,
            "tool": self.action.tool,
            "args": self.action.args,
            "reason": self.action.reason,
            "payload_hash": self.payload_hash,
        }


def suggestion_id(account_id: str, kind: str) -> str:
    return "sug_" + sha256_hex({"account": account_id, "kind": kind, "agent": AGENT})[:20]


def suggestions(
    spec: AgentSpec,
    account: AccountSnapshot,
    assessment: Assessment,
    today: date,
    *,
    csm: dict[str, str],
    room: Room | None = None,
    tool_fields: Callable[[str], set[str]] | None = None,
) -> list[Suggestion]:
    """Every kind the copilot agent can do for this account now (a kind whose step finds
    no reachable contact, or whose tool is not granted, is not offered)."""
    out: list[Suggestion] = []
    for kind in KINDS:
        plan = playbook.plan_stretch(
            spec,
            account,
            assessment,
            RunFacts(started=today),
            today,
            event={"type": EVENT_TYPE, "kind": kind},
            csm=csm,
            room=room,
            tool_fields=tool_fields,
        )
        for action in plan.actions:
            if action.tool not in spec.tools:  # the playbook's grants are the only tools
                continue
            out.append(Suggestion(suggestion_id(account.id, kind), kind, TITLES[kind], action))
    return out


def find(items: list[Suggestion], sid: str) -> Suggestion | None:
    return next((s for s in items if s.id == sid), None)
