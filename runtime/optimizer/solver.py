"""The Cost-to-Retain Optimizer: the cheapest set of actions whose expected effect
reaches a goal within the budget and the contact limits, solved exactly as a
0/1 integer program with scipy's `milp` (HiGHS).

Goals:
- retention: keep the renewal probability ≥ p. Action i cuts churn risk by a
  relative u_i (independently), so risk after = r · Π(1 − u_i), and the goal is
  Σ x_i · −ln(1 − u_i) ≥ ln(r / (1 − p)): linear in the choices x_i.
- adoption: raise a module's 30-day adoption from a to b; effects add up:
  Σ x_i · g_i ≥ b − a.

Effects come from the store's outcomes when there are enough (a T-learner: the
retention rate of treated minus untreated at-risk accounts of the segment),
shrunk towards the per-segment priors of catalogue.json."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy.optimize import Bounds, LinearConstraint, milp

from autopilot.runtime.optimizer.catalogue import CatalogueAction, cost_of, load_catalogue

PRIOR_WEIGHT = 20.0  # the prior counts as this many observed accounts


class Goal(BaseModel):
    kind: Literal["retention", "adoption"]
    target: float = Field(ge=0, le=1)  # renewal probability to keep, or adoption to reach
    current: float = Field(ge=0, le=1)  # churn risk now (retention), or adoption now


class Limits(BaseModel):
    budget: float = Field(ge=0)
    high_touch_left: int = Field(2, ge=0)  # the contact cap left this quarter
    contacts_left: int = Field(4, ge=0)


class Option(BaseModel):
    name: str
    tool: str
    cost: float
    effect: float  # relative risk reduction (retention) or adoption points
    success_probability: float  # the option alone reaching the goal
    high_touch: bool
    source: str  # "prior" or "learned (n=…)"


class Plan(BaseModel):
    feasible: bool
    actions: list[Option]  # in the order to run them: cheapest first
    total_cost: float
    expected: float  # renewal probability (retention) or adoption (adoption) after the plan
    success_probability: float


class Result(BaseModel):
    goal: Goal
    limits: Limits
    best: Plan
    alternatives: list[Plan]  # the runners-up, next cheapest
    options: list[Option]  # every catalogue option with its marginal cost and success probability


def blend(prior: float, learned: tuple[float, int] | None) -> tuple[float, str]:
    """Shrink a learned effect towards the prior by its sample size."""
    if learned is None or learned[1] == 0:
        return prior, "prior"
    value, n = learned
    return (n * value + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT), f"learned (n={n}) + prior"


def options_for(
    goal: Goal,
    *,
    segment: str,
    arr: float,
    catalogue: list[CatalogueAction] | None = None,
    learned: dict[str, tuple[float, int]] | None = None,
) -> tuple[list[Option], list[CatalogueAction]]:
    catalogue = [a for a in (catalogue or load_catalogue()) if a.effective]
    need = _need(goal)
    out = []
    for a in catalogue:
        prior = (a.retention if goal.kind == "retention" else a.adoption).get(segment, 0.0)
        effect, source = blend(prior, (learned or {}).get(a.name))
        out.append(
            Option(
                name=a.name,
                tool=a.tool,
                cost=cost_of(a, segment=segment, arr=arr),
                effect=round(effect, 4),
                success_probability=round(_alone(goal, effect, need), 4),
                high_touch=a.high_touch,
                source=source,
            )
        )
    return out, catalogue


def _weight(goal: Goal, effect: float) -> float:
    return -math.log(1 - min(effect, 0.999)) if goal.kind == "retention" else effect


def _need(goal: Goal) -> float:
    if goal.kind == "retention":
        allowed = 1 - goal.target  # the churn risk we may keep
        return max(0.0, math.log(max(goal.current, 1e-9) / max(allowed, 1e-9)))
    return max(0.0, goal.target - goal.current)


def _alone(goal: Goal, effect: float, need: float) -> float:
    if need <= 0:
        return 1.0
    if goal.kind == "retention":  # the chance that this action alone is what keeps the account
        return min(1.0, effect)
    return min(1.0, effect / need)


def optimize(
    goal: Goal,
    limits: Limits,
    *,
    segment: str,
    arr: float,
    alternatives: int = 2,
    catalogue: list[CatalogueAction] | None = None,
    learned: dict[str, tuple[float, int]] | None = None,
) -> Result:
    options, cat = options_for(goal, segment=segment, arr=arr, catalogue=catalogue, learned=learned)
    n = len(options)
    cost = np.array([o.cost for o in options])
    weight = np.array([_weight(goal, o.effect) for o in options])
    need = _need(goal)
    rows, lo, hi = (
        [
            weight,
            cost,
            np.array([o.high_touch for o in options], dtype=float),
            np.array([a.contacts for a in cat], dtype=float),
        ],
        [need - 1e-9, 0, 0, 0],
        [np.inf, limits.budget, limits.high_touch_left, limits.contacts_left],
    )
    for group in {a.group for a in cat if a.group}:  # at most one of a group (one discount)
        rows.append(np.array([a.group == group for a in cat], dtype=float))
        lo.append(0)
        hi.append(1)
    plans: list[Plan] = []
    cuts: list[tuple[np.ndarray, float]] = []
    for _ in range(1 + alternatives):
        a_rows = rows + [c for c, _ in cuts]
        a_hi = hi + [h for _, h in cuts]
        res = milp(
            c=cost + 1e-6 * np.arange(n),
            integrality=np.ones(n),
            bounds=Bounds(0, 1),
            constraints=_constraint(np.vstack(a_rows), lo + [-np.inf] * len(cuts), a_hi),
        )
        if res.x is None:
            break
        chosen = np.flatnonzero(res.x > 0.5)
        plans.append(_plan(goal, options, chosen, feasible=True))
        cut = np.zeros(n)
        cut[chosen] = 1
        cuts.append((cut, len(chosen) - 1))  # the next plan differs in at least one action
    if not plans:  # no plan reaches the goal: the most effect the limits allow, flagged
        res = milp(
            c=-weight,
            integrality=np.ones(n),
            bounds=Bounds(0, 1),
            constraints=_constraint(np.vstack(rows[1:]), lo[1:], hi[1:]),
        )
        chosen = np.flatnonzero(res.x > 0.5) if res.x is not None else np.array([], dtype=int)
        plans.append(_plan(goal, options, chosen, feasible=False))
    return Result(goal=goal, limits=limits, best=plans[0], alternatives=plans[1:], options=options)


def _constraint(a: np.ndarray, lo: list[float], hi: list[float]) -> LinearConstraint:
    # Bounds per row; scipy's stubs type lb/ub as scalars, but arrays are its documented use.
    return LinearConstraint(a, np.array(lo), np.array(hi))  # pyright: ignore[reportArgumentType]


def _plan(goal: Goal, options: list[Option], chosen: np.ndarray, *, feasible: bool) -> Plan:
    picked = sorted((options[i] for i in chosen), key=lambda o: o.cost)
    if goal.kind == "retention":
        risk = goal.current * math.prod(1 - o.effect for o in picked)
        expected = 1 - risk
        success = expected  # the renewal probability with the plan
    else:
        expected = min(1.0, goal.current + sum(o.effect for o in picked))
        success = (
            1.0
            if expected >= goal.target - 1e-9
            else (expected - goal.current) / max(_need(goal), 1e-9)
        )
    return Plan(
        feasible=feasible,
        actions=picked,
        total_cost=round(sum(o.cost for o in picked), 2),
        expected=round(expected, 4),
        success_probability=round(min(1.0, success), 4),
    )


def learn_uplift(outcomes: list[dict[str, Any]], *, segment: str) -> dict[str, tuple[float, int]]:
    """T-learner on past at-risk accounts of a segment: for each action, the retention
    rate of accounts that got it vs those that got none, as a relative risk cut.
    `outcomes`: {"segment", "actions": [names], "retained": bool}."""
    rows = [o for o in outcomes if o["segment"] == segment]
    control = [o["retained"] for o in rows if not o["actions"]]
    if len(control) < 5:
        return {}
    churn0 = 1 - sum(control) / len(control)
    out: dict[str, tuple[float, int]] = {}
    for name in {a for o in rows for a in o["actions"]}:
        treated = [o["retained"] for o in rows if name in o["actions"]]
        if not treated or churn0 <= 0:
            continue
        churn1 = 1 - sum(treated) / len(treated)
        out[name] = (max(0.0, min(0.95, 1 - churn1 / churn0)), len(treated))
    return out
