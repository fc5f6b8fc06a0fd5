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
cost entries): the same rows the product's own reports count."""

from __future__ import annotations

import dataclasses
import math
import shutil
import sqlite3
import tempfile
import time as clock_time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from cronsim import CronSim
from sqlalchemy import create_engine, func
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel, col, select

from autopilot.runtime.accounts.fold import fold
from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.agents.playbook import RunFacts, pick_contact, plan_stretch, resolve
from autopilot.runtime.agents.triggers import SCHEDULE_EVENT, Triggers
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.account import AccountSnapshot, Assessment
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.contracts.policy import ActorIn, Decision
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.devstack.simulator import simulate as simulate_portfolio
from autopilot.runtime.graph.nodes import _room
from autopilot.runtime.health.features import MODULES, WINDOW
from autopilot.runtime.health.scoring import score
from autopilot.runtime.ledger.cbr import book_action_cost
from autopilot.runtime.optimizer.catalogue import CatalogueAction, cost_of, entry
from autopilot.runtime.policy.engine import PolicyLoadError
from autopilot.runtime.policy.gate import Reservation, gate_action
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.services import Services, build_services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord, PolicyDecisionRecord
from autopilot.runtime.store.customer import CostEntry
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.mail import ReceivedMail
from autopilot.runtime.store.outbox import CsmTask, InAppMessage
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.runtime.store.users import User

DEFAULT_ACCOUNTS = 240  # the demo portfolio (`autopilot up`)
DEFAULT_SEED = 7  # the demo's seed
CHURN_RATE = 0.22  # the simulator's default share of churners (over its whole history)
DIP_RATE = 0.1  # as the demo's history: the same engagement levels carry on
SNAPSHOT_EVERY = 7  # days between usage snapshots (30-day active users, seats in use)
TICKET_DAYS = {"P1": 1, "P3": 3}  # a ticket is closed this many days after it opened
LOCAL_HOUR = 11  # each account's day is decided at 11:00 its first contact's time
KEY = "sim:"  # every run key the simulation writes starts so
RULE_COOLDOWN_DAYS = 30
RULES = "rule_playbook"


class SimulationError(ValueError):
    """Bad input (an unknown agent or segment, a store that cannot be copied)."""


# --- the rule playbook ---------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    id: str
    action: str  # the catalogue action
    holds: Callable[[AccountSnapshot, date], bool]


def _saturated(a: AccountSnapshot, _today: date) -> bool:
    return a.seats_used / max(a.seats_purchased, 1) >= 0.95


RULE_BOOK = (
    Rule("health_below_50", "csm_call", lambda a, _d: a.health < 50.0),
    Rule(
        "renewal_within_60d", "renewal_check_in", lambda a, d: 0 < (a.renewal_date - d).days <= 60
    ),
    Rule("seats_95pct", "ae_task", _saturated),
)
RULE_ROLES = ["champion", "admin", "executive_sponsor"]


def rule_spec() -> AgentSpec:
    """The rule playbook as the gate sees an agent: its grants, no limits of its own,
    on autopilot (a CTA goes straight to the CSM, as in today's suites)."""
    return AgentSpec.model_validate(
        {
            "name": RULES,
            "description": "Rules in the style of today's CS suites, for comparison.",
            "goal": {"description": "none", "metric": "none"},
            "schedule": "0 6 * * *",
            "autonomy": "autopilot",
            "tools": ["create_csm_task", "send_email"],
            "scopes": ["task:create", "email:send"],
            "playbook": [{"id": r.id, "do": r.action} for r in RULE_BOOK],
        }
    )


def rule_action(rule: Rule, a: AccountSnapshot, today: date) -> ProposedAction | None:
    option = entry(rule.action)
    if option.tool == "send_email":
        contact = pick_contact(a, RULE_ROLES)
        if contact is None:
            return None
        args: dict[str, Any] = {
            "to": contact.email,
            "subject": f"{a.name}: your renewal on {a.renewal_date}",
            "body": f"Hello {contact.name}, your renewal is coming up on {a.renewal_date}.",
        }
    else:
        args = {
            "account_id": a.id,
            "assignee": a.owner_csm,
            "title": f"{rule.id.replace('_', ' ')}: {option.name.replace('_', ' ')} with {a.name}",
            "detail": f"health {a.health:.0f}, {a.seats_used}/{a.seats_purchased} seats, "
            f"renewal {a.renewal_date}",
            "due_days": 3,
        }
    return ProposedAction(
        tool=option.tool,
        args=args,
        reason=f"rule {rule.id}",
        expected_cost=cost_of(option, segment=a.segment, arr=a.arr),
        expected_uplift=min(1.0, option.retention.get(a.segment, 0.0)),
        category=option.category,  # type: ignore[arg-type]
        high_touch=option.high_touch,
        hours=option.hours,
        step=rule.id,
        option=option.name,
    )


# --- the simulator's events ------------------------------------------------------------


def day_events(
    p: Any, i: int, t: int, *, arr: float, snapshot: bool
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Account `i`'s events on the simulator's day `t` (EventIn payloads), and the
    tickets it opened (days until closed, priority)."""
    s = p.signals
    out: list[dict[str, Any]] = []
    if snapshot:
        active_30d = int(s["active_users"][i, max(0, t - 29) : t + 1].max())
        out.append(
            {
                "type": "usage_snapshot",
                "active_users": active_30d,
                "seats_used": int(p.seats_used[i, t]),
            }
        )
    if (logins := int(s["logins"][i, t])) > 0:
        out.append(
            {"type": "login", "logins": logins, "active_users": int(s["active_users"][i, t])}
        )
    bits = int(s["modules"][i, t])
    out += [{"type": "feature_use", "module": m} for k, m in enumerate(MODULES) if bits & (1 << k)]
    p1 = int(s["p1"][i, t])
    other = max(0, int(s["tickets"][i, t]) - p1)
    opened = [(TICKET_DAYS["P1"], "P1")] * p1 + [(TICKET_DAYS["P3"], "P3")] * other
    out += [{"type": "ticket_opened", "priority": prio} for _, prio in opened]
    if (n := int(s["sentiment_n"][i, t])) > 0:
        value = float(np.clip(s["sentiment_sum"][i, t] / n, -1, 1))
        out.append({"type": "sentiment", "sentiment": round(value, 3)})
    if p.nps[i, t] >= 0 and (t == 0 or p.nps[i, t] != p.nps[i, t - 1]):
        out.append({"type": "nps", "score": int(p.nps[i, t])})
    out += [{"type": "payment_failed", "amount": round(arr / 12, 2)}] * int(
        s["payment_failed"][i, t]
    )
    return out, opened


# --- runs --------------------------------------------------------------------------


@dataclass
class Run:
    agent: str
    account_id: str
    number: int
    started: date
    event: dict[str, Any]
    cursor: int = 0
    stretch: int = 0
    done: dict[str, str] = field(default_factory=dict)
    wake: date | None = None

    @property
    def workflow_id(self) -> str:
        return f"{KEY}{self.agent}:{self.account_id}"


class Clock:
    """The throwaway services' clock: the simulated moment a decision is taken."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def decided_at(a: AccountSnapshot, day: date) -> datetime:
    """11:00 in the account's first contact's time zone (inside everyone's business day,
    outside quiet hours), kept on `day` in UTC; noon UTC for an account without contacts."""
    if not a.contacts:
        return datetime.combine(day, time(12), UTC)
    at = datetime.combine(day, time(LOCAL_HOUR), ZoneInfo(a.contacts[0].timezone)).astimezone(UTC)
    lo, hi = datetime.combine(day, time(0, 30), UTC), datetime.combine(day, time(23, 30), UTC)
    return min(max(at, lo), hi)


def fires_on(cron: str, day: date) -> bool:
    start = datetime.combine(day, time.min) - timedelta(seconds=1)
    return next(CronSim(cron, start)).date() == day


# --- the simulation ---------------------------------------------------------------------


@dataclass
class Portfolio:
    ids: list[str]
    arr: dict[str, float]
    segment: dict[str, str]
    risk0: dict[str, float]
    renewing: set[str]


class Simulation:
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

    # --- set-up ---

    def _prepare(self) -> tuple[Engine, Engine]:
        """The agents' store (the demo portfolio seeded, or a copy of the configured
        store) and the rule playbook's (a copy of it as it is before day 1): both
        SQLite in memory, gone with the process."""
        db = memory_engine()
        if self.from_store:
            url = self.settings.db_url
            if not url.startswith("sqlite:///"):
                raise SimulationError(f"only a SQLite store can be copied, not {url.split(':')[0]}")
            source = Path(url.removeprefix("sqlite:///"))
            if not source.is_file():
                raise SimulationError(f"no store at {source}")
            src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)  # read, never written
            try:
                _copy(src, db)
            finally:
                src.close()
            SQLModel.metadata.create_all(db)  # tables newer than the copied store
            _ledger_indexes(db)
        else:
            seed_portfolio(db, n=self.accounts, seed=self.seed, today=self.start, org_id="demo")
        rules_db = memory_engine()
        _copy(_driver(db), rules_db)
        return db, rules_db

    def _services(self, folder: Path, db: Engine, rules_db: Engine) -> tuple[Services, Services]:
        settings = self.settings.model_copy(
            # A data folder of its own (empty, deleted at the end): nothing lands in the real one.
            update={"data_dir": folder, "database_url": "sqlite://", "smtp_host": ""}
        )
        svc = build_services(settings, db=db, clock=self.clock)
        svc.smtp = None  # nothing is sent: and nothing could be
        unknown = sorted(set(self.agent_names or []) - set(svc.specs))
        if unknown:
            raise SimulationError(
                f"no agent {', '.join(unknown)} (agents: {', '.join(sorted(svc.specs))})"
            )
        return svc, dataclasses.replace(svc, db=rules_db)

    def _portfolio(self, db: Engine) -> tuple[Portfolio, list[Account]]:
        with transaction(db) as session:
            q = select(Account).where(Account.status == "active").order_by(col(Account.id))
            if self.org_id is not None:
                q = q.where(Account.org_id == self.org_id)
            every = list(session.exec(q))
            if not every:
                raise SimulationError("the portfolio has no active account")
            chosen = [a for a in every if self.segment in (None, a.segment)]
            if not chosen:
                raise SimulationError(f"no active account in segment {self.segment}")
            snaps = {a.id: get_snapshot(session, account_id=a.id, today=self.start) for a in chosen}
        horizon = self.start + timedelta(days=self.days)
        return Portfolio(
            ids=[a.id for a in chosen],
            arr={a.id: a.arr for a in chosen},
            segment={a.id: a.segment for a in chosen},
            risk0={i: s.churn_risk for i, s in snaps.items() if s is not None},
            renewing={a.id for a in chosen if a.renewal_date <= horizon},
        ), every

    # --- the run ---

    async def run(self, on_day: Callable[[int], None] | None = None) -> dict[str, Any]:
        began = clock_time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="autopilot-simulate-"))
        db = rules_db = None
        try:
            db, rules_db = self._prepare()
            before = side_effects(db, rules_db)
            self.svc, self.rules_svc = self._services(folder, db, rules_db)
            self.rules = rule_spec()
            names = self.agent_names or sorted(self.svc.specs)
            self.specs = {n: self.svc.specs[n] for n in names}
            self.triggers = Triggers(self.specs)
            self.portfolio, everyone = self._portfolio(db)
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
            report = self._report(db, rules_db)
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

    # --- the report ---

    def _effect(self, actor: str, option: str, segment: str) -> float:
        try:
            a: CatalogueAction = (
                resolve(self.svc.specs[actor], option) if actor in self.svc.specs else entry(option)
            )
        except KeyError:
            return 0.0
        return float(a.retention.get(segment, 0.0))

    def _budget(self) -> dict[str, float]:
        try:
            limits = read_limits(self.svc.policy)
        except PolicyLoadError:
            return {"per_quarter": math.inf, "horizon": math.inf}
        by_segment: dict[str, float] = defaultdict(float)
        for i in self.portfolio.ids:
            seg = self.portfolio.segment[i]
            by_segment[seg] += limits.account_budget(seg, self.portfolio.arr[i])
        per_quarter = sum(
            min(total, limits.budget[s].segment_quarter_budget) if s in limits.budget else total
            for s, total in by_segment.items()
        )
        quarters = {
            (day.year, (day.month - 1) // 3)
            for day in (self.start + timedelta(days=k + 1) for k in range(self.days))
        }
        return {"per_quarter": per_quarter, "horizon": per_quarter * len(quarters)}

    def _report(self, db: Engine, rules_db: Engine) -> dict[str, Any]:
        budget = self._budget()
        agents = self._strategy(
            db, runs=dict(self.started_runs), slices=sorted(self.specs), by="by_agent"
        )
        rules = self._strategy(
            rules_db, runs=dict(self.rules_fired), slices=[r.id for r in RULE_BOOK], by="by_rule"
        )
        none = self._strategy(None, runs={}, slices=[], by=None)
        horizon = budget["horizon"]
        for figures in (none, rules, agents):
            figures["budget"] = round(horizon, 2) if math.isfinite(horizon) else None
            figures["spend_pct_of_budget"] = (
                round(100 * figures["spend"] / horizon, 2)
                if horizon and math.isfinite(horizon)
                else None
            )
        p = self.portfolio
        return {
            "ok": True,
            "portfolio": {
                "source": f"copy of {self.settings.db_url}"
                if self.from_store
                else f"demo seed {self.seed} ({self.accounts} accounts)",
                "org": self.org_id,
                "segment": self.segment,
                "accounts": len(p.ids),
                "arr": round(sum(p.arr.values()), 2),
                "renewing_in_horizon": len(p.renewing),
                "mean_churn_risk": round(sum(p.risk0.values()) / max(1, len(p.risk0)), 4),
                "start": self.start.isoformat(),
                "days": self.days,
                "events": self.events,
                "simulated_churns": len(self.churned),
            },
            "agents": sorted(self.specs),
            "budget_per_quarter": round(budget["per_quarter"], 2)
            if math.isfinite(budget["per_quarter"])
            else None,
            "strategies": {"no_action": none, RULES: rules, "agents": agents},
            "assumptions": {
                "retained_arr": "every simulated account: sum of ARR x (1 - churn risk after "
                "actions); churn risk = Health 2.0 at the start",
                "effect": "each executed action (approvals counted as granted) cuts the risk "
                "by its catalogue retention effect for the segment; a repeat of the same "
                "catalogue action on an account adds none",
                "cbr": "spend / retained ARR (spend = the simulated actions' booked costs)",
                "budget": "the policy's account budgets (capped by the segment budgets) "
                "for each calendar quarter the horizon touches",
                "people": "no replies, takeovers or expansions: the simulator has no people",
                "rules": "health < 50 -> csm_call; renewal in 1-60 days -> renewal_check_in; "
                "seats >= 95 % used -> ae_task; each at most once per account per "
                f"{RULE_COOLDOWN_DAYS} days",
            },
        }

    def _strategy(
        self, db: Engine | None, *, runs: dict[str, int], slices: list[str], by: str | None
    ) -> dict[str, Any]:
        """One strategy's figures, counted from its ledger (none: no action): the actions
        and their statuses, the costs booked, the decision log's deny codes."""
        p = self.portfolio
        records: list[ActionRecord] = []
        spend: dict[str, float] = {}  # by action key
        codes: dict[str, list[str]] = {}  # by action key
        if db is not None:
            with transaction(db) as session:
                records = list(
                    session.exec(
                        select(ActionRecord)
                        .where(col(ActionRecord.run_key).startswith(KEY))
                        .order_by(col(ActionRecord.run_key))
                    )
                )
                for e in session.exec(
                    select(CostEntry).where(col(CostEntry.action_key).startswith(KEY))
                ):
                    spend[str(e.action_key)] = spend.get(str(e.action_key), 0.0) + e.amount
                for d in session.exec(
                    select(PolicyDecisionRecord).where(
                        col(PolicyDecisionRecord.run_key).startswith(KEY),
                        PolicyDecisionRecord.outcome == "deny",
                    )
                ):
                    codes[d.run_key] = d.codes.split()
        risk, uplift = outcome(records, p.risk0, p.arr, self._effect)
        total = figures(
            records, spend=spend, codes=codes, accounts=set(p.ids), arr=p.arr, risk=risk
        )
        total["runs"] = sum(runs.values())
        total["expected_uplift_arr"] = round(sum(uplift.values()), 2)
        total["accounts_touched"] = len({r.account_id for r in records if r.status == "executed"})
        if by is not None:
            rows = {}
            for name in slices:
                mine = [r for r in records if slice_of(r) == name]
                rows[name] = figures(
                    mine,
                    spend=spend,
                    codes=codes,
                    # The slice's accounts, as the CbR ledger has them: those it spent on.
                    accounts={r.account_id for r in mine if r.run_key in spend},
                    arr=p.arr,
                    risk=risk,
                )
                rows[name]["runs"] = runs.get(name, 0)
                rows[name]["expected_uplift_arr"] = round(
                    sum(uplift.get(r.run_key, 0.0) for r in mine), 2
                )
            total[by] = rows
        return total


def slice_of(record: ActionRecord) -> str:
    """An agent's action: the agent; the rule playbook's: the rule (its step)."""
    if record.agent == RULES:
        return str(record.payload.get("step") or RULES)
    return record.agent


def outcome(
    records: list[ActionRecord],
    risk0: dict[str, float],
    arr: dict[str, float],
    effect: Callable[[str, str, str], float],
) -> tuple[dict[str, float], dict[str, float]]:
    """Each account's churn risk after the executed actions (in the order they ran), and
    the expected ARR each action saved (by action key): an action of effect u on an
    account at risk r saves ARR × r × u and leaves r × (1 − u). A catalogue action
    already applied to the account adds nothing."""
    risk = dict(risk0)
    applied: set[tuple[str, str]] = set()
    uplift: dict[str, float] = {}
    for r in records:
        if r.status != "executed" or r.account_id not in risk:
            continue
        option = str(r.payload.get("option") or r.tool)
        if (r.account_id, option) in applied:
            continue
        applied.add((r.account_id, option))
        u = effect(r.agent, option, r.segment)
        uplift[r.run_key] = arr[r.account_id] * risk[r.account_id] * u
        risk[r.account_id] *= 1 - u
    return risk, uplift


def figures(
    records: list[ActionRecord],
    *,
    spend: dict[str, float],
    codes: dict[str, list[str]],
    accounts: set[str],
    arr: dict[str, float],
    risk: dict[str, float],
) -> dict[str, Any]:
    """Counts, spend, retained ARR and CbR of one slice: `records` its actions, `accounts`
    the accounts whose retained ARR it is measured against."""
    executed = [r for r in records if r.status == "executed"]
    total_spend = sum(spend.get(r.run_key, 0.0) for r in records)
    retained = sum(arr[a] * (1 - risk[a]) for a in accounts if a in risk)
    deny = Counter(code for r in records for code in codes.get(r.run_key, []))
    return {
        "runs": 0,
        "actions_proposed": len(records),
        "auto_executed": sum(1 for r in executed if not r.needed_approval),
        "approval": sum(1 for r in executed if r.needed_approval),
        "denied": sum(1 for r in records if r.status == "denied"),
        "deny_codes": dict(sorted(deny.items())),
        "spend": round(total_spend, 2),
        "expected_uplift_arr": 0.0,
        "accounts": len(accounts),
        "arr": round(sum(arr[a] for a in accounts), 2),
        "retained_arr": round(retained, 2),
        "cbr": round(total_spend / retained, 6) if retained else None,
    }


SIDE_EFFECTS = {  # what a tool that ran would have left in the store
    "tool_calls": ToolCallRecord,
    "mails": ReceivedMail,
    "in_app_messages": InAppMessage,
    "csm_tasks": CsmTask,
}


def side_effects(*stores: Engine) -> dict[str, int]:
    """Rows that executed tools (and the SMTP sink) write, over the throwaway stores."""
    counts = dict.fromkeys(SIDE_EFFECTS, 0)
    for db in stores:
        with transaction(db) as session:
            for name, table in SIDE_EFFECTS.items():
                counts[name] += session.exec(select(func.count()).select_from(table)).one()
    return counts


def memory_engine() -> Engine:
    """A throwaway SQLite store in memory: one connection, shared by every session."""
    engine = create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )
    SQLModel.metadata.create_all(engine)
    _ledger_indexes(engine)
    return engine


def _ledger_indexes(engine: Engine) -> None:
    """Indexes for the ledger's reads, which a simulation makes tens of thousands of times
    on a ledger that grows all along (they change what is fast, not what is read)."""
    with engine.begin() as conn:
        for name, columns in (
            ("account_agent", "account_id, agent, status, updated_at, expected_cost"),
            ("segment_status", "segment, status, updated_at, expected_cost"),
            ("account_recipient", "account_id, recipient, status, updated_at"),
        ):
            conn.exec_driver_sql(
                f"CREATE INDEX IF NOT EXISTS ix_simulate_{name} ON actionrecord ({columns})"
            )


def _driver(engine: Engine) -> sqlite3.Connection:
    conn = engine.raw_connection().driver_connection
    assert isinstance(conn, sqlite3.Connection)
    return conn


def _copy(source: sqlite3.Connection, target: Engine) -> None:
    """A consistent copy of a SQLite database (its WAL included) into `target`."""
    source.backup(_driver(target))


async def simulate(settings: Settings, **kwargs: Any) -> dict[str, Any]:
    """Run a simulation (see `Simulation` for the arguments) and return its report."""
    on_day = kwargs.pop("on_day", None)
    return await Simulation(settings, **kwargs).run(on_day=on_day)
