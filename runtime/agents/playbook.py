"""The playbook engine: what an agent does next for one account, from its spec alone.

Pure decision code, used by the graph's plan node, by `agents preview` and by the
portfolio simulation, so all three take the same decisions. It walks the playbook
from a cursor to the next wait (a *stretch*), checks the exit criteria, evaluates each
step's condition, renders its arguments from templates, and lets the optimizer choose
among a step's options. It knows no tool by name."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import cel
from jinja2 import StrictUndefined, Template, TemplateNotFound
from jinja2.loaders import DictLoader
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel

from autopilot.runtime.contracts.account import AccountSnapshot, Assessment, ContactInfo
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import ActionStep, AgentSpec, WaitStep
from autopilot.runtime.optimizer import solver
from autopilot.runtime.optimizer.catalogue import CatalogueAction, cost_of, load_catalogue

# --- what the run knows of itself -----------------------------------------------------


class RunFacts(BaseModel):
    """The run's own history, as conditions see it (`run.*` in CEL and templates)."""

    started: date
    events: list[str] = []  # event types on the account since the run began
    done: dict[str, str] = {}  # step id -> its action's final status
    stretch: int = 0  # how many waits are behind

    def as_cel(self, today: date) -> dict[str, Any]:
        return {
            "events": self.events,
            "replied": "email_reply" in self.events,
            "done": self.done,
            "executed": [s for s, status in self.done.items() if status == "executed"],
            "days": (today - self.started).days,
            "stretch": self.stretch,
        }


def metrics(account: AccountSnapshot) -> dict[str, float]:
    seats = max(account.seats_purchased, 1)
    return {
        "renewal_probability": round(1 - account.churn_risk, 4),
        "adoption": round(account.active_users_30d / seats, 4),
        "seat_utilisation": round(account.seats_used / seats, 4),
    }


def account_cel(account: AccountSnapshot, today: date) -> dict[str, Any]:
    reachable = [c for c in account.contacts if not c.opted_out]
    return {
        **account.as_cel(today),
        **metrics(account),
        # Roles of the people who can be written to, and of those without the ADMT
        # pre-use notice on record (a significant automated decision needs it first).
        "contact_roles": sorted({c.role for c in reachable}),
        "roles_without_notice": sorted({c.role for c in reachable if c.notice_at is None}),
        "opted_out_contacts": len(account.contacts) - len(reachable),
    }


def context(
    account: AccountSnapshot, run: RunFacts, today: date, event: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "account": account_cel(account, today),
        "run": run.as_cel(today),
        "event": event or {},
    }


def holds(expr: str, ctx: dict[str, Any]) -> bool:
    """A CEL condition; one that cannot be evaluated (a field absent) does not hold."""
    try:
        return cel.compile(expr).execute(ctx) is True
    except Exception:  # noqa: BLE001 - CEL raises many kinds (index, division, ...): not met
        return False


# --- goal and exit ---------------------------------------------------------------------


def goal_value(spec: AgentSpec, account: AccountSnapshot, run: RunFacts) -> float | None:
    metric = spec.goal.metric
    if metric == "none":
        return None
    if metric == "expansion_answered":
        return 1.0 if {"expanded", "expansion_declined"} & set(run.events) else 0.0
    return metrics(account)[metric]


def goal_met(spec: AgentSpec, account: AccountSnapshot, run: RunFacts) -> bool:
    value = goal_value(spec, account, run)
    return value is not None and value >= spec.goal.target


def exit_reason(
    spec: AgentSpec, account: AccountSnapshot, run: RunFacts, today: date, *, first: bool = False
) -> str | None:
    """Why the run stops now, or None. Checked before every stretch; a goal already met
    does not stop the first one (its steps carry their own conditions: a renewal
    forecast is written however likely the renewal is)."""
    ex = spec.exit
    if ex.churned and (account.status == "churned" or "churned" in run.events):
        return "churned"
    if ex.human_took_over and "csm_takeover" in run.events:
        return "human_took_over"
    if ex.goal_met and not first and goal_met(spec, account, run):
        return "goal_met"
    if ex.when and holds(ex.when, context(account, run, today)):
        return "exit_condition"
    if spec.goal.within_days is not None and (today - run.started).days > spec.goal.within_days:
        return "deadline"
    return None


def in_audience(spec: AgentSpec, account: AccountSnapshot, tier: str, today: date) -> bool:
    aud = spec.audience
    if aud.segments and account.segment not in aud.segments:
        return False
    if aud.tiers and tier not in aud.tiers:
        return False
    return not aud.filter or holds(aud.filter, {"account": account_cel(account, today)})


# --- stretches -------------------------------------------------------------------------


def stretch(spec: AgentSpec, cursor: int) -> tuple[list[ActionStep], int | None, float | None]:
    """The action steps from `cursor` to the next wait, the cursor after that wait (None:
    the playbook ends with this stretch) and the wait in seconds."""
    steps: list[ActionStep] = []
    for i in range(cursor, len(spec.playbook)):
        step = spec.playbook[i]
        if isinstance(step, WaitStep):
            more = any(isinstance(s, ActionStep) for s in spec.playbook[i + 1 :])
            return steps, (i + 1 if more else None), (step.seconds if more else None)
        steps.append(step)
    return steps, None, None


# --- options ---------------------------------------------------------------------------


def resolve(spec: AgentSpec, name: str) -> CatalogueAction:
    """A step's option: a catalogue action (with the agent's overrides), or a granted tool
    used as is (no price, no expected effect unless the agent's catalogue says so)."""
    found = next((a for a in load_catalogue() if a.name == name), None)
    if found is None:
        if name not in spec.tools:
            raise KeyError(f"'{name}' is neither a catalogue action nor a granted tool")
        found = CatalogueAction(
            name=name,
            tool=name,
            channel="tool",
            category="operational",
            fixed_cost=0.0,
            hours=0.0,
            discount_pct=0.0,
            high_touch=False,
            contacts=0,
            group=None,
            retention={},
            adoption={},
            expansion={},
        )
    over = spec.catalogue.get(name)
    if over is None:
        return found
    changes: dict[str, Any] = {}
    if over.fixed_cost is not None:
        changes["fixed_cost"] = over.fixed_cost
    if over.hours is not None:
        changes["hours"] = over.hours
    if over.effect is not None:
        every = dict.fromkeys(("enterprise", "mid_market", "smb", "tech_touch"), over.effect)
        changes[_effect_field(spec)] = every
    return dataclasses.replace(found, **changes)


def _effect_field(spec: AgentSpec) -> str:
    return {
        "renewal_probability": "retention",
        "adoption": "adoption",
        "seat_utilisation": "expansion",
        "expansion_answered": "expansion",
    }.get(spec.goal.metric, "retention")


def effect_of(spec: AgentSpec, option: CatalogueAction, segment: str) -> float:
    return float(getattr(option, _effect_field(spec)).get(segment, 0.0))


def optimizer_goal(spec: AgentSpec, account: AccountSnapshot) -> solver.Goal | None:
    m = metrics(account)
    kind = _effect_field(spec)
    if spec.goal.metric == "none":
        return None
    if kind == "retention":
        return solver.Goal(kind="retention", target=spec.goal.target, current=account.churn_risk)
    if kind == "adoption":
        return solver.Goal(kind="adoption", target=spec.goal.target, current=m["adoption"])
    # Expansion: the chance the proposal is answered; each action a further chance.
    return solver.Goal(kind="retention", target=spec.goal.target, current=1.0)


# --- templates -------------------------------------------------------------------------


class TemplateProblem(ValueError):
    """A template that does not render for this account: a deny, never a silent send."""


def _env(spec: AgentSpec) -> ImmutableSandboxedEnvironment:
    return _env_for(tuple(sorted(spec.template_sources.items())))


# Compiling a template costs more than the rest of planning: an agent's templates are
# compiled once per worker (keyed by their text, so an edited spec compiles afresh).
@functools.lru_cache(maxsize=64)
def _env_for(sources: tuple[tuple[str, str], ...]) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        loader=DictLoader(dict(sources)),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )


@functools.lru_cache(maxsize=4096)
def _compiled(env: ImmutableSandboxedEnvironment, source: str) -> Template:
    return env.from_string(source)


def merge_fields(
    spec: AgentSpec,
    account: AccountSnapshot,
    assessment: Assessment,
    run: RunFacts,
    today: date,
    *,
    contact: ContactInfo | None,
    option: CatalogueAction,
    csm: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "account": account_cel(account, today),
        "contact": contact.model_dump(mode="json") if contact else None,
        "csm": csm or {"id": account.owner_csm, "name": account.owner_csm, "email": ""},
        "health": round(assessment.health, 1),
        "risk": round(assessment.risk, 3),
        "factors": [r.model_dump(mode="json") for r in assessment.reasons],
        "option": {
            "name": option.name,
            "discount_pct": option.discount_pct,
            "cost": cost_of(option, segment=account.segment, arr=account.arr),
        },
        "agent": {"name": spec.name, "goal": spec.goal.description},
        "run": run.as_cel(today),
        "today": today.isoformat(),
        "dates": {f"d{n}": (today + timedelta(days=n)).isoformat() for n in (1, 2, 3, 7, 14, 30)},
    }


def render_value(env: ImmutableSandboxedEnvironment, value: Any, fields: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return _compiled(env, value).render(fields).strip()
    if isinstance(value, list):
        return [render_value(env, v, fields) for v in value]
    if isinstance(value, dict):
        return {k: render_value(env, v, fields) for k, v in value.items()}
    return value


def template_name(spec: AgentSpec, name: str, language: str) -> str:
    """The language variant of a template if the agent has it, else the default."""
    for candidate in (f"{name}.{language}", name):
        if candidate in spec.template_sources:
            return candidate
    raise TemplateNotFound(name)


def render_args(
    spec: AgentSpec,
    step: ActionStep,
    fields: dict[str, Any],
    language: str,
    keep: set[str] | None = None,
) -> tuple[dict[str, Any], str]:
    """The step's arguments for one option: a step may list the arguments of all its
    options' tools; each tool gets the ones its schema has (`keep`)."""
    env = _env(spec)
    wanted = (lambda arg: arg in keep) if keep is not None else (lambda arg: True)
    try:
        args = {k: render_value(env, v, fields) for k, v in step.args.items() if wanted(k)}
        for arg, name in step.templates.items():
            if wanted(arg):
                source = template_name(spec, name, language)
                args[arg] = env.get_template(source).render(fields).strip()
        reason = render_value(env, step.reason, fields) if step.reason else ""
    except Exception as err:  # noqa: BLE001 - Jinja's own errors, or a filter's (division, format)
        raise TemplateProblem(f"step {step.id}: {type(err).__name__}: {err}") from None
    return args, reason


def pick_contact(account: AccountSnapshot, roles: list[str]) -> ContactInfo | None:
    ranked = sorted(
        (c for c in account.contacts if c.role in roles), key=lambda c: (roles.index(c.role), c.id)
    )
    return ranked[0] if ranked else None


# --- a stretch's plan ------------------------------------------------------------------


class Room(BaseModel):
    """What the account has left for this agent: the optimizer's limits."""

    budget: float = 1e12
    high_touch_left: int = 99
    contacts_left: int = 99
    blocked_recipients: list[str] = []  # opted out or within the cool-down
    max_hours: float = 1e9  # the longest high-touch action the policy allows


class Note(BaseModel):
    """Why a step did or did not become an action (kept in the run's state and audit)."""

    step: str
    outcome: str  # proposed | skipped | no_contact | rejected_recently | no_option | template
    detail: str = ""
    chosen: list[str] = []
    alternatives: list[list[str]] = []
    total_cost: float | None = None
    expected: float | None = None


class StretchPlan(BaseModel):
    actions: list[ProposedAction]
    notes: list[Note]
    exit: str | None = None
    next_cursor: int | None = None
    wait_s: float | None = None


def plan_stretch(
    spec: AgentSpec,
    account: AccountSnapshot,
    assessment: Assessment,
    run: RunFacts,
    today: date,
    *,
    cursor: int = 0,
    event: dict[str, Any] | None = None,
    room: Room | None = None,
    rejected: dict[str, str] | None = None,
    learned: dict[str, tuple[float, int]] | None = None,
    csm: dict[str, str] | None = None,
    language: str | None = None,
    tool_fields: Callable[[str], set[str]] | None = None,
) -> StretchPlan:
    """The actions of the stretch at `cursor`, in playbook order, each priced from the
    catalogue; a step with several options gets the optimizer's cheapest sufficient mix."""
    room = room or Room()
    rejected = rejected or {}
    reason = exit_reason(spec, account, run, today, first=cursor == 0)
    if reason is not None:
        return StretchPlan(actions=[], notes=[], exit=reason)
    steps, next_cursor, wait_s = stretch(spec, cursor)
    ctx = context(account, run, today, event)
    actions: list[ProposedAction] = []
    notes: list[Note] = []
    budget = room.budget
    for step in steps:
        if len(actions) >= spec.limits.max_actions_per_run:
            notes.append(Note(step=step.id, outcome="skipped", detail="max actions per run"))
            continue
        if step.when and not holds(step.when, ctx):
            notes.append(Note(step=step.id, outcome="skipped", detail=f"not ({step.when})"))
            continue
        contact = pick_contact(account, step.to) if step.to else None
        if step.to and (contact is None or contact.email in room.blocked_recipients):
            why = "no contact in roles " + ", ".join(step.to)
            if contact is not None:
                why = f"{contact.role} is opted out or was contacted within the cool-down"
            notes.append(Note(step=step.id, outcome="no_contact", detail=why))
            continue
        options: list[CatalogueAction] = []
        for name in step.do:
            option = resolve(spec, name)
            if option.tool in rejected:
                notes.append(
                    Note(
                        step=step.id,
                        outcome="rejected_recently",
                        detail=f"{option.name}: {rejected[option.tool] or 'rejected'}",
                    )
                )
                continue
            if option.discount_pct > spec.limits.max_discount_pct:
                continue
            if option.high_touch and option.hours > room.max_hours:
                continue
            options.append(option)
        if not options:
            notes.append(Note(step=step.id, outcome="no_option", detail="every option excluded"))
            continue
        chosen, note = _choose(spec, step, options, account, budget, room, learned)
        notes.append(note)
        for option in chosen:
            fields = merge_fields(
                spec, account, assessment, run, today, contact=contact, option=option, csm=csm
            )
            try:
                args, why = render_args(
                    spec,
                    step,
                    fields,
                    language or _language(contact),
                    tool_fields(option.tool) if tool_fields else None,
                )
            except TemplateProblem as err:
                notes.append(Note(step=step.id, outcome="template", detail=str(err)))
                continue
            cost = cost_of(option, segment=account.segment, arr=account.arr)
            budget -= cost
            actions.append(
                ProposedAction(
                    tool=option.tool,
                    args=args,
                    reason=why or f"{spec.name}: {step.id} ({option.name})",
                    expected_cost=cost,
                    expected_uplift=min(1.0, effect_of(spec, option, account.segment)),
                    discount_pct=option.discount_pct,
                    category=option.category,  # type: ignore[arg-type]
                    high_touch=option.high_touch,
                    hours=option.hours,
                    step=step.id,
                    option=option.name,
                )
            )
    return StretchPlan(
        actions=actions[: spec.limits.max_actions_per_run],
        notes=notes,
        next_cursor=next_cursor,
        wait_s=wait_s,
    )


def _language(contact: ContactInfo | None) -> str:
    return contact.language if contact else "en"


def _choose(
    spec: AgentSpec,
    step: ActionStep,
    options: list[CatalogueAction],
    account: AccountSnapshot,
    budget: float,
    room: Room,
    learned: dict[str, tuple[float, int]] | None,
) -> tuple[list[CatalogueAction], Note]:
    """One option: it. Several: the optimizer's cheapest mix expected to reach the goal
    within what is left (the most effect the limits allow when nothing reaches it)."""
    goal = optimizer_goal(spec, account)
    if len(options) == 1 or goal is None:
        cheapest = min(options, key=lambda o: cost_of(o, segment=account.segment, arr=account.arr))
        return [cheapest], Note(step=step.id, outcome="proposed", chosen=[cheapest.name])
    kind = _effect_field(spec)
    as_solver = [
        # The solver reads `retention`/`adoption`: hand it the effect this goal counts.
        dataclasses.replace(o, retention=getattr(o, kind), adoption=getattr(o, kind))
        for o in options
    ]
    result = solver.optimize(
        goal,
        solver.Limits(
            budget=max(0.0, budget),
            high_touch_left=room.high_touch_left,
            contacts_left=room.contacts_left,
        ),
        segment=account.segment,
        arr=account.arr,
        catalogue=as_solver,
        learned=learned,
    )
    by_name = {o.name: o for o in options}
    best = result.best
    chosen = [by_name[o.name] for o in best.actions]
    return chosen, Note(
        step=step.id,
        outcome="proposed" if chosen else "no_option",
        detail=("reaches the goal" if best.feasible else "the most the limits allow")
        + (f"; learned uplift for {sorted(learned)}" if learned else ""),
        chosen=[o.name for o in chosen],
        alternatives=[[o.name for o in p.actions] for p in result.alternatives],
        total_cost=best.total_cost,
        expected=best.expected,
    )
