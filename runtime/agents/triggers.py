"""Agent triggers: CEL expressions compiled once, evaluated per event (never Python eval)."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import cel

from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.contracts.agent_spec import AgentSpec

log = logging.getLogger(__name__)


class Triggers:
    def __init__(self, specs: dict[str, AgentSpec]) -> None:
        self._programs = {name: cel.compile(spec.trigger) for name, spec in specs.items()}

    def matching(self, account: AccountSnapshot, event: dict[str, Any], today: date) -> list[str]:
        ctx = {"account": account.as_cel(today), "event": event}
        hits = []
        for name, program in self._programs.items():
            try:
                if program.execute(ctx) is True:
                    hits.append(name)
            except (KeyError, ValueError, TypeError) as err:
                # A field the expression needs is absent for this event: no match.
                log.debug("trigger %s not evaluable: %s", name, err)
        return hits
