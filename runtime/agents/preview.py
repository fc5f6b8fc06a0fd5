"""What an agent would do for an account now: its playbook's first stretch, as the run's
plan node builds it, each action decided by the gate without a reservation. Nothing is
sent and no run starts (the gate's decisions are logged, like any other)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import select

from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.agents import playbook
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.account import Assessment
from autopilot.runtime.contracts.policy import ActorIn
from autopilot.runtime.graph.nodes import _room  # pyright: ignore[reportPrivateUsage]
from autopilot.runtime.policy.gate import gate_action
from autopilot.runtime.services import build_services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.users import User


class NotFound(LookupError):
    """No such agent or account."""


def preview(settings: Settings, name: str, account_id: str, event_type: str) -> dict[str, Any]:
    """The playbook's first stretch for the account now, as the run's plan node builds it,
    each action decided by the gate without a reservation (nothing sent, no run).
    Raises NotFound for an unknown agent or account."""

    svc = build_services(settings)
    spec = svc.specs.get(name)
    if spec is None:
        raise NotFound(f"no agent '{name}' in {settings.agents_path}")
    now: datetime = svc.clock()
    since = now - timedelta(days=spec.limits.rejection_cooldown_days)
    with transaction(svc.db) as session:
        snapshot = get_snapshot(session, account_id=account_id, today=now.date())
        account = session.get(Account, account_id)
        if snapshot is None or account is None:
            raise NotFound(f"no account '{account_id}'")
        rejected = {
            r.tool: r.rejection_reason or ""
            for r in session.exec(
                select(ActionRecord).where(
                    ActionRecord.account_id == account_id,
                    ActionRecord.agent == spec.name,
                    ActionRecord.status == "rejected",
                    ActionRecord.updated_at >= since,
                )
            )
        }
        room, learned = _room(svc, session, spec, account, now)
        owner = session.get(User, account.owner_csm)
    # As the graph's assess node: the snapshot's Health 2.0 score and its reasons.
    assessment = Assessment(
        health=snapshot.health, risk=snapshot.churn_risk, reasons=snapshot.health_reasons
    )
    stretch = playbook.plan_stretch(
        spec,
        snapshot,
        assessment,
        playbook.RunFacts(started=now.date()),  # a run starting now: no history yet
        now.date(),
        event={"type": event_type},
        room=room,
        rejected=rejected,
        learned=learned,
        csm={
            "id": account.owner_csm,
            "name": owner.name if owner else account.owner_csm,
            "email": owner.email if owner else "",
        },
        tool_fields=lambda tool: set(svc.tools.get(tool).args_model.model_fields),
    )

    async def decide() -> list[Any]:
        return [
            await gate_action(
                svc,
                run_key=f"preview:{spec.name}:{account_id}:{i}",
                action=action,
                account=snapshot,
                spec=spec,
                actor=ActorIn(type="agent", id=spec.name),
                pinned_bundle=None,
                reserve=None,  # decide and log; reserve nothing
            )
            for i, action in enumerate(stretch.actions)
        ]

    decisions = asyncio.run(decide())
    return {
        "ok": True,
        "agent": spec.name,
        "account": {
            "id": snapshot.id,
            "name": snapshot.name,
            "segment": snapshot.segment,
            "health": round(snapshot.health, 1),
            "churn_risk": round(snapshot.churn_risk, 3),
            **playbook.metrics(snapshot),
        },
        "at": now.isoformat(),
        "event": event_type,
        "exit": stretch.exit,
        "room": room.model_dump(mode="json"),
        "notes": [n.model_dump(mode="json") for n in stretch.notes],
        "actions": [
            {
                "step": a.step,
                "option": a.option,
                "tool": a.tool,
                "args": a.args,
                "reason": a.reason,
                "cost": a.expected_cost,
                "decision": {
                    "outcome": d.outcome,
                    "roles": d.roles,
                    "deny": [v.model_dump(mode="json") for v in d.deny],
                    "conflicts": d.conflicts,
                },
            }
            for a, d in zip(stretch.actions, decisions, strict=True)
        ],
        "next": {"wait_s": stretch.wait_s, "cursor": stretch.next_cursor},
        "sent": False,
    }
