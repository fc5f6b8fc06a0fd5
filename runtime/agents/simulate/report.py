"""The simulation's report: each strategy's figures counted from its throwaway ledger
(actions, decision log, cost entries: the rows the product's own reports count), the
expected outcome of the executed actions, and the policy's budget over the horizon."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from functools import partial
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from autopilot.runtime.agents.playbook import resolve
from autopilot.runtime.agents.simulate.rules import RULE_BOOK, RULE_COOLDOWN_DAYS, RULES
from autopilot.runtime.agents.simulate.world import KEY, Portfolio
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.optimizer.catalogue import CatalogueAction, entry
from autopilot.runtime.policy.engine import PolicyLoadError
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.services import Services
from autopilot.runtime.store.actions import ActionRecord, PolicyDecisionRecord
from autopilot.runtime.store.customer import CostEntry
from autopilot.runtime.store.db import transaction


class Finished(Protocol):
    """What the report reads of a finished simulation (`engine.Simulation`)."""

    settings: Settings
    svc: Services
    portfolio: Portfolio
    specs: dict[str, AgentSpec]
    start: date
    days: int
    seed: int
    accounts: int
    segment: str | None
    org_id: str | None
    from_store: bool
    started_runs: Counter[str]
    rules_fired: Counter[str]
    events: int
    churned: set[str]


def retention_effect(sim: Finished, actor: str, option: str, segment: str) -> float:
    try:
        a: CatalogueAction = (
            resolve(sim.svc.specs[actor], option) if actor in sim.svc.specs else entry(option)
        )
    except KeyError:
        return 0.0
    return float(a.retention.get(segment, 0.0))


def horizon_budget(sim: Finished) -> dict[str, float]:
    try:
        limits = read_limits(sim.svc.policy)
    except PolicyLoadError:
        return {"per_quarter": math.inf, "horizon": math.inf}
    by_segment: dict[str, float] = defaultdict(float)
    for i in sim.portfolio.ids:
        seg = sim.portfolio.segment[i]
        by_segment[seg] += limits.account_budget(seg, sim.portfolio.arr[i])
    per_quarter = sum(
        min(total, limits.budget[s].segment_quarter_budget) if s in limits.budget else total
        for s, total in by_segment.items()
    )
    quarters = {
        (day.year, (day.month - 1) // 3)
        for day in (sim.start + timedelta(days=k + 1) for k in range(sim.days))
    }
    return {"per_quarter": per_quarter, "horizon": per_quarter * len(quarters)}


def build_report(sim: Finished, db: Engine, rules_db: Engine) -> dict[str, Any]:
    budget = horizon_budget(sim)
    agents = strategy(sim, db, runs=dict(sim.started_runs), slices=sorted(sim.specs), by="by_agent")
    rules = strategy(
        sim, rules_db, runs=dict(sim.rules_fired), slices=[r.id for r in RULE_BOOK], by="by_rule"
    )
    none = strategy(sim, None, runs={}, slices=[], by=None)
    horizon = budget["horizon"]
    for totals in (none, rules, agents):
        totals["budget"] = round(horizon, 2) if math.isfinite(horizon) else None
        totals["spend_pct_of_budget"] = (
            round(100 * totals["spend"] / horizon, 2)
            if horizon and math.isfinite(horizon)
            else None
        )
    p = sim.portfolio
    return {
        "ok": True,
        "portfolio": {
            "source": f"copy of {sim.settings.db_url}"
            if sim.from_store
            else f"demo seed {sim.seed} ({sim.accounts} accounts)",
            "org": sim.org_id,
            "segment": sim.segment,
            "accounts": len(p.ids),
            "arr": round(sum(p.arr.values()), 2),
            "renewing_in_horizon": len(p.renewing),
            "mean_churn_risk": round(sum(p.risk0.values()) / max(1, len(p.risk0)), 4),
            "start": sim.start.isoformat(),
            "days": sim.days,
            "events": sim.events,
            "simulated_churns": len(sim.churned),
        },
        "agents": sorted(sim.specs),
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


def strategy(
    sim: Finished, db: Engine | None, *, runs: dict[str, int], slices: list[str], by: str | None
) -> dict[str, Any]:
    """One strategy's figures, counted from its ledger (none: no action): the actions
    and their statuses, the costs booked, the decision log's deny codes."""
    p = sim.portfolio
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
    risk, uplift = outcome(records, p.risk0, p.arr, partial(retention_effect, sim))
    total = figures(records, spend=spend, codes=codes, accounts=set(p.ids), arr=p.arr, risk=risk)
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
