"""The simulation's day loop: each day the simulator's events folded in and the accounts
rescored, then, account by account, the agents' runs started and stepped (planned,
gated for real, recorded) and the rule playbook applied on the same snapshot."""

from __future__ import annotations

import math
import shutil
import tempfile
import time as clock_time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import col, select

from autopilot.runtime.accounts.fold import fold
from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.agents.playbook import RunFacts, plan_stretch
from autopilot.runtime.agents.simulate.report import build_report
from autopilot.runtime.agents.simulate.rules import (
    RULE_BOOK,
    RULE_COOLDOWN_DAYS,
    RULES,
    rule_action,
    rule_spec,
)
from autopilot.runtime.agents.simulate.stores import (
    make_services,
    prepare_stores,
    read_portfolio,
    side_effects,
)
from autopilot.runtime.agents.simulate.world import (
    CHURN_RATE,
    DEFAULT_ACCOUNTS,
    DEFAULT_SEED,
    DIP_RATE,
    KEY,
    SNAPSHOT_EVERY,
    Clock,
    Run,
    SimulationError,
    day_events,
    decided_at,
    fires_on,
)
from autopilot.runtime.agents.triggers import SCHEDULE_EVENT, Triggers
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.account import AccountSnapshot, Assessment
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.contracts.policy import ActorIn, Decision
from autopilot.runtime.devstack.simulator import simulate as simulate_portfolio
from autopilot.runtime.graph.nodes import _room
from autopilot.runtime.health.features import WINDOW
from autopilot.runtime.health.scoring import score
from autopilot.runtime.ledger.cbr import book_action_cost
from autopilot.runtime.policy.gate import Reservation, gate_action
from autopilot.runtime.services import Services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.users import User


class Simulation:
    """One simulation over `days` days from `start` (default: today): the demo portfolio
    seeded with `seed` (`accounts` of them), or a copy of the configured store
    (`from_store`); `agents` and `segment` narrow it (default: every agent, account)."""

    def __init__(
        self,
        settings: Settings,
        *,
        agents: list[str] | None = None,
        segment: str | None = None,
        days: int = 90,
        accounts: int = DEFAULT_ACCOUNTS,
        seed: int = DEFAULT_SEED,
        start: date | None = None,
        from_store: bool = False,
        org_id: str | None = None,
    ) -> None:
        if days < 1:
            raise SimulationError("days must be at least 1")
        self.settings, self.days, self.seed = settings, days, seed
        self.accounts, self.segment, self.from_store = accounts, segment, from_store
        self.start = start or date.today()
        self.org_id = org_id if org_id is not None else (None if from_store else "demo")
        self.agent_names = agents
        self.clock = Clock(datetime.combine(self.start, time(12), UTC))
        self.runs: dict[tuple[str, str], Run] = {}
        self.started_runs: Counter[str] = Counter()
        self.rule_fired: dict[tuple[str, str], date] = {}
        self.rules_fired: Counter[str] = Counter()
        self.types: dict[str, list[tuple[date, str]]] = defaultdict(list)
        self.closing: dict[str, list[tuple[int, str]]] = defaultdict(list)
        self.seq = 0
        self.events = 0
        self.churned: set[str] = set()

    # --- the run ---

    async def run(self, on_day: Callable[[int], None] | None = None) -> dict[str, Any]:
        began = clock_time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="autopilot-simulate-"))
        db = rules_db = None
        try:
            db, rules_db = prepare_stores(
                self.settings,
                from_store=self.from_store,
                accounts=self.accounts,
                seed=self.seed,
                start=self.start,
            )
            before = side_effects(db, rules_db)
            self.svc, self.rules_svc = make_services(
                self.settings,
                folder=folder,
                db=db,
                rules_db=rules_db,
                clock=self.clock,
                agents=self.agent_names,
            )
            self.rules = rule_spec()
            names = self.agent_names or sorted(self.svc.specs)
            self.specs = {n: self.svc.specs[n] for n in names}
            self.triggers = Triggers(self.specs)
            self.portfolio, everyone = read_portfolio(
                db, org_id=self.org_id, segment=self.segment, start=self.start, days=self.days
            )
            self.sim = simulate_portfolio(
                len(everyone),
                days=WINDOW + self.days,
                seed=self.seed,
                churn_rate=CHURN_RATE,
                dip_rate=DIP_RATE,
                segment=np.array([a.segment for a in everyone]),
                seats=np.array([a.seats_purchased for a in everyone]),
            )
            self.row = {a.id: k for k, a in enumerate(everyone)}
            for d in range(self.days):
                await self._day(d)
                if on_day is not None:
                    on_day(d + 1)
            report = build_report(self, db, rules_db)
            after = side_effects(db, rules_db)
            report["sent"] = {k: after[k] - before[k] for k in after}
        finally:
            for engine in (db, rules_db):
                if engine is not None:
                    engine.dispose()
            shutil.rmtree(folder, ignore_errors=True)
        report["elapsed_s"] = round(clock_time.perf_counter() - began, 1)
        return report

    async def _day(self, d: int) -> None:
        today = self.start + timedelta(days=d + 1)
        t = WINDOW + d
        events = self._fold(today, t, d)
        sweep = [n for n, s in self.specs.items() if s.schedule and fires_on(s.schedule, today)]
        rules_due = fires_on(self.rules.schedule or "0 6 * * *", today)
        with transaction(self.svc.db) as session:
            snaps = {
                i: get_snapshot(session, account_id=i, today=today)
                for i in self.portfolio.ids
                if i not in self.churned or any(r.account_id == i for r in self.runs.values())
            }
        for account_id, snap in snaps.items():
            if snap is None:
                continue
            self.clock.at = decided_at(snap, today)
            await self._agents(snap, today, events.get(account_id, []), sweep)
            if rules_due and snap.status == "active":
                await self._rules(snap, today)

    def _fold(self, today: date, t: int, d: int) -> dict[str, list[dict[str, Any]]]:
        """The simulator's day `t` folded into the throwaway store, then every simulated
        account rescored as of `today` (the daily rescore)."""
        at = datetime.combine(today, time(12), UTC)
        p = self.sim
        out: dict[str, list[dict[str, Any]]] = {}
        with transaction(self.svc.db, writes=True) as session:
            accounts = session.exec(
                select(Account).where(col(Account.id).in_(self.portfolio.ids))
            ).all()
            for account in sorted(accounts, key=lambda a: a.id):
                if account.status != "active":
                    continue
                i = self.row[account.id]
                if 0 <= p.churn_day[i] <= t:
                    evs: list[dict[str, Any]] = [{"type": "churned"}]
                    self.churned.add(account.id)
                else:
                    evs, opened = day_events(
                        p, i, t, arr=account.arr, snapshot=d % SNAPSHOT_EVERY == 0
                    )
                    pending = self.closing.get(account.id, [])
                    evs += [
                        {"type": "ticket_closed", "priority": prio}
                        for due, prio in pending
                        if due <= d
                    ]
                    self.closing[account.id] = [c for c in pending if c[0] > d] + [
                        (d + days, prio) for days, prio in opened
                    ]
                    if account.renewal_date == today:
                        evs.append({"type": "renewed"})
                for ev in evs:
                    payload = EventIn.model_validate({"account_id": account.id, **ev})
                    fold(session, account, payload.model_dump(exclude_none=True), at)
                    self.types[account.id].append((today, ev["type"]))
                self.events += len(evs)
                out[account.id] = [
                    {"account_id": account.id, "occurred_at": at.isoformat(), **ev} for ev in evs
                ]
            session.flush()
            score(session, [a for a in accounts if a.status == "active"], today=today, now=at)
        return out

    # --- the agents ---

    async def _agents(
        self, snap: AccountSnapshot, today: date, events: list[dict[str, Any]], sweep: list[str]
    ) -> None:
        starts: dict[str, dict[str, Any]] = {}
        if snap.status == "active":
            if sweep:
                for name in self.triggers.due(snap, today, sweep):
                    starts.setdefault(name, {"type": SCHEDULE_EVENT})
            seen: list[dict[str, Any]] = []
            for ev in events:
                if ev in seen:
                    continue
                seen.append(ev)
                for name in self.triggers.matching(snap, ev, today):
                    starts.setdefault(name, ev)
        # The account's agents, highest priority first (the supervisor's order).
        order = sorted(self.specs, key=lambda n: (-self.specs[n].priority, n))
        for name in order:
            run = self.runs.get((name, snap.id))
            if run is not None:
                if run.wake is not None and run.wake <= today:
                    await self._stretch(run, snap, today)
                continue  # a running run coalesces the event
            if name in starts:
                self.seq += 1
                self.started_runs[name] += 1
                run = Run(
                    agent=name,
                    account_id=snap.id,
                    number=self.started_runs[name],
                    started=today,
                    event={"type": starts[name]["type"], "event_id": self.seq},
                )
                self.runs[(name, snap.id)] = run
                await self._stretch(run, snap, today)

    async def _stretch(self, run: Run, snap: AccountSnapshot, today: date) -> None:
        """One stretch, as the plan, gate and record nodes take it."""
        svc = self.svc
        spec = svc.specs[run.agent]
        now = self.clock()
        since = now - timedelta(days=spec.limits.rejection_cooldown_days)
        with transaction(svc.db) as session:
            rejected = {
                r.tool: r.rejection_reason or ""
                for r in session.exec(
                    select(ActionRecord).where(
                        ActionRecord.account_id == snap.id,
                        ActionRecord.agent == spec.name,
                        ActionRecord.status == "rejected",
                        ActionRecord.updated_at >= since,
                    )
                )
            }
            account = session.get(Account, snap.id)
            assert account is not None
            room, learned = _room(svc, session, spec, account, now)
            owner = session.get(User, account.owner_csm)
        facts = RunFacts(
            started=run.started,
            events=[kind for day, kind in self.types[snap.id] if day >= run.started],
            done=run.done,
            stretch=run.stretch,
        )
        plan = plan_stretch(
            spec,
            snap,
            Assessment(health=snap.health, risk=snap.churn_risk, reasons=snap.health_reasons),
            facts,
            today,
            cursor=run.cursor,
            event=run.event,
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
        for i, action in enumerate(plan.actions):
            at = f"{run.stretch}.{i}" if run.stretch else str(i)
            key = f"{KEY}{self._next():07d}:{run.workflow_id.removeprefix(KEY)}/{run.number}/{at}"
            status = await self._gate(svc, spec, action, snap, key, run.workflow_id)
            if action.step:
                run.done[action.step] = status
        if plan.exit or plan.next_cursor is None or plan.wait_s is None:
            del self.runs[(run.agent, run.account_id)]
            return
        run.cursor, run.stretch = plan.next_cursor, run.stretch + 1
        run.wake = today + timedelta(days=max(1, math.ceil(plan.wait_s / 86400)))

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    async def _gate(
        self,
        svc: Services,
        spec: AgentSpec,
        action: ProposedAction,
        snap: AccountSnapshot,
        key: str,
        workflow_id: str,
    ) -> str:
        """The gate with its reservation in the throwaway ledger, then the record node's
        bookkeeping: executed (allowed, or approved by a person the same day) or denied."""
        decision: Decision = await gate_action(
            svc,
            run_key=key,
            action=action,
            account=snap,
            spec=spec,
            actor=ActorIn(type="agent", id=spec.name),
            pinned_bundle=None,
            reserve=Reservation(key=key, workflow_id=workflow_id, agent=spec.name),
        )
        status = "executed" if decision.allow else "denied"
        with transaction(svc.db) as session:
            row = session.get(ActionRecord, key)
            assert row is not None  # the gate's reservation
            row.status, row.updated_at = status, svc.clock()
            session.add(row)
            if status == "executed":
                book_action_cost(session, row, at=svc.clock())
        return status

    # --- the rule playbook ---

    async def _rules(self, snap: AccountSnapshot, today: date) -> None:
        for rule in RULE_BOOK:
            last = self.rule_fired.get((rule.id, snap.id))
            if last is not None and (today - last).days < RULE_COOLDOWN_DAYS:
                continue
            if not rule.holds(snap, today):
                continue
            action = rule_action(rule, snap, today)
            if action is None:
                continue
            self.rule_fired[(rule.id, snap.id)] = today
            self.rules_fired[rule.id] += 1
            key = f"{KEY}{self._next():07d}:{RULES}:{snap.id}/{rule.id}"
            await self._gate(self.rules_svc, self.rules, action, snap, key, f"{KEY}{RULES}")
