"""Portfolio simulation: the agents' real decision path, in dry run, over a portfolio and
the simulator's next N days, side by side with no action and with a rule playbook.

Everything happens in throwaway stores (SQLite in memory, gone at the end): the demo
portfolio seeded with the demo's seed, or a copy of the configured SQLite store.
Day after day the simulator's events are folded in (`fold`, as ingest does) and the
accounts rescored (Health 2.0); then, account by account, the event triggers
(`Triggers.matching`) and the sweep (`Triggers.due`, on the days the agent's cron fires)
start runs; a run plans its stretch with `plan_stretch` (the room and learned uplift of
the plan node), and each action is gated for real (`gate_action`, with its reservation
written to the throwaway ledger), then recorded as the record node does: executed (an
approval counts as granted the same day) with its cost booked, or denied. Waits put the
next stretch that many days later; exits end the run. Nothing is sent and no tool runs:
no executor, no SMTP, no Temporal.

The rule playbook of today's CS suites runs on the same accounts and events, priced
from the catalogue and gated the same way in a ledger of its own: health < 50 → a CSM
call, renewal within 60 days → a renewal email, seats ≥ 95 % used → an AE task (each
rule at most once per account per 30 days).

The outcome: an account's churn probability over the horizon is its Health 2.0 churn
risk at the start; each executed action cuts it by its catalogue retention effect for
the segment (risk × (1 − u); a catalogue action repeated on an account adds no further
effect). Expected retained ARR = Σ ARR × (1 − risk after), over every simulated account.
Every count and sum is read back from the throwaway ledgers (actions, decision log,
cost entries): the same rows the product's own reports count.

The files: `world.py` (constants, the simulator's events, runs, the clock), `stores.py`
(the throwaway stores and the set-up), `rules.py` (the rule playbook), `engine.py`
(the day loop: fold, agents, gate, rules), `report.py` (the figures)."""

from __future__ import annotations

from typing import Any

from autopilot.runtime.agents.simulate.engine import Simulation
from autopilot.runtime.agents.simulate.report import figures, outcome, slice_of
from autopilot.runtime.agents.simulate.rules import (
    RULE_BOOK,
    RULE_COOLDOWN_DAYS,
    RULE_ROLES,
    RULES,
    Rule,
    rule_action,
    rule_spec,
)
from autopilot.runtime.agents.simulate.stores import SIDE_EFFECTS, memory_engine, side_effects
from autopilot.runtime.agents.simulate.world import (
    CHURN_RATE,
    DEFAULT_ACCOUNTS,
    DEFAULT_SEED,
    DIP_RATE,
    KEY,
    LOCAL_HOUR,
    SNAPSHOT_EVERY,
    TICKET_DAYS,
    Clock,
    Portfolio,
    Run,
    SimulationError,
    day_events,
    decided_at,
    fires_on,
)
from autopilot.runtime.config import Settings

__all__ = [
    "CHURN_RATE",
    "DEFAULT_ACCOUNTS",
    "DEFAULT_SEED",
    "DIP_RATE",
    "KEY",
    "LOCAL_HOUR",
    "RULES",
    "RULE_BOOK",
    "RULE_COOLDOWN_DAYS",
    "RULE_ROLES",
    "SIDE_EFFECTS",
    "SNAPSHOT_EVERY",
    "TICKET_DAYS",
    "Clock",
    "Portfolio",
    "Rule",
    "Run",
    "Simulation",
    "SimulationError",
    "day_events",
    "decided_at",
    "figures",
    "fires_on",
    "memory_engine",
    "outcome",
    "rule_action",
    "rule_spec",
    "side_effects",
    "simulate",
    "slice_of",
]


async def simulate(settings: Settings, **kwargs: Any) -> dict[str, Any]:
    """Run a simulation (see `Simulation` for the arguments) and return its report."""
    on_day = kwargs.pop("on_day", None)
    return await Simulation(settings, **kwargs).run(on_day=on_day)
