"""When agents start: CEL triggers on events, and the sweep's schedule. Expressions are
compiled once and evaluated per account (never Python eval); an agent acts only on its
audience."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import cel

from autopilot.runtime.agents.playbook import account_cel, in_audience
from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.contracts.agent_spec import AgentSpec

log = logging.getLogger(__name__)

SCHEDULE_EVENT = "schedule"  # the event type of a run the sweep starts


class Triggers:
    def __init__(self, specs: dict[str, AgentSpec]) -> None:
        self._specs = specs
        self._programs = {
            name: cel.compile(spec.trigger) for name, spec in specs.items() if spec.trigger
        }

    def _fires(self, name: str, ctx: cel.Context) -> bool:
        program = self._programs.get(name)
        if program is None:
            return True  # a scheduled agent without a trigger: its audience is all it asks
        try:
            return program.execute(ctx) is True
        except Exception as err:  # noqa: BLE001 - CEL raises many kinds: the trigger does not fire
            # A field the expression needs is absent for this event: no match.
            log.debug("trigger %s not evaluable: %s", name, err)
            return False

    def matching(self, account: AccountSnapshot, event: dict[str, Any], today: date) -> list[str]:
        """Agents an event starts: those with a trigger that holds, on their audience."""
        # One Context for every agent: converting the account to CEL values is most of an
        # evaluation's cost, and a Context converts it once.
        ctx = cel.Context({"account": account_cel(account, today), "event": event})
        return [
            name
            for name in self._programs
            if in_audience(self._specs[name], account, account.tier, today)
            and self._fires(name, ctx)
        ]

    def due(
        self, account: AccountSnapshot, today: date, agents: list[str] | None = None
    ) -> list[str]:
        """Agents a sweep starts on this account: scheduled ones (of `agents`, if given)
        whose audience includes it and whose trigger, if any, holds for the sweep."""
        ctx = cel.Context(
            {"account": account_cel(account, today), "event": {"type": SCHEDULE_EVENT}}
        )
        return [
            name
            for name, spec in self._specs.items()
            if spec.schedule is not None
            and (agents is None or name in agents)
            and in_audience(spec, account, account.tier, today)
            and self._fires(name, ctx)
        ]
