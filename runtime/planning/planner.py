"""The LLM planner: the same inputs as the playbook's `plan_stretch`, but a model proposes
the actions, by tool calling over the agent's granted tools only.

The model is an untrusted proposer. Each tool call is validated into a ProposedAction
here — the tool granted, its arguments valid for the tool's schema, the recipient a
reachable contact of this account in the step's roles, the call one of the playbook's
candidate steps, the discount and cost recomputed from the arguments and the catalogue
(never taken from the model), the drafted copy checked against the action's facts.
An invalid answer gets one repair attempt with the errors; a second one fails safe: no
action, and a review task for the CSM carrying the reason. The optimizer then chooses
among the valid candidates (the playbook's `_choose`, the same solver the offline path
uses) and the gate still decides every one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import ValidationError

from autopilot.runtime.agents import playbook
from autopilot.runtime.agents.playbook import Note, RunFacts, StretchPlan, TemplateProblem
from autopilot.runtime.contracts.account import AccountSnapshot, Assessment, ContactInfo
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import ActionStep, AgentSpec
from autopilot.runtime.llm.config import LlmConfig
from autopilot.runtime.llm.messages import ChatResult, Message, ToolCall, ToolDef
from autopilot.runtime.optimizer.catalogue import CatalogueAction, cost_of
from autopilot.runtime.planning import drafting, prompt
from autopilot.runtime.planning.prompt import Candidate, DataText
from autopilot.tools.registry import Registry

ChatFn = Callable[[LlmConfig, Sequence[Message], Sequence[ToolDef] | None], ChatResult]
FAIL_SAFE = "llm.fail_safe"  # the option of the review task a failed plan becomes


@dataclass
class Attempt:
    """One model answer: what it asked for and why each refused call was refused."""

    calls: list[ToolCall]
    errors: list[str]  # "code: message"


@dataclass
class LlmPlan:
    stretch: StretchPlan
    fail_safe: str | None = None  # the reason the model's answer could not be used
    attempts: list[Attempt] = field(default_factory=list)
    cost: float = 0.0

    @property
    def codes(self) -> list[str]:
        return sorted({e.split(":", 1)[0] for a in self.attempts for e in a.errors})


@dataclass
class _Step:
    step: ActionStep
    options: list[CatalogueAction]
    recipients: dict[str, ContactInfo]  # email -> contact, reachable and in the step's roles


def granted_tools(spec: AgentSpec, tools: Registry) -> list[ToolDef]:
    """The tool definitions the model sees: the agent's tools that its scopes cover."""
    scopes = set(spec.scopes)
    return [
        ToolDef(name=t.name, description=t.description.split("\n")[0], parameters=t.schema())
        for t in tools.list()
        if t.name in spec.tools and set(t.scopes) <= scopes
    ]


def _candidates(
    spec: AgentSpec,
    account: AccountSnapshot,
    steps: list[ActionStep],
    ctx: dict[str, Any],
    room: playbook.Room,
    rejected: dict[str, str],
    notes: list[Note],
) -> list[_Step]:
    """The stretch's steps the model may act on, as the offline planner filters them."""
    out: list[_Step] = []
    for step in steps:
        if step.when and not playbook.holds(step.when, ctx):
            notes.append(Note(step=step.id, outcome="skipped", detail=f"not ({step.when})"))
            continue
        reachable = {
            c.email: c
            for c in account.contacts
            if c.role in step.to and not c.opted_out and c.email not in room.blocked_recipients
        }
        if step.to and not reachable:
            notes.append(Note(step=step.id, outcome="no_contact", detail="no reachable contact"))
            continue
        options = [
            o
            for o in (playbook.resolve(spec, name) for name in step.do)
            if o.tool not in rejected
            and o.discount_pct <= spec.limits.max_discount_pct
            and not (o.high_touch and o.hours > room.max_hours)
        ]
        if not options:
            notes.append(Note(step=step.id, outcome="no_option", detail="every option excluded"))
            continue
        out.append(_Step(step, options, reachable))
    return out


@dataclass
class _Inputs:
    spec: AgentSpec
    account: AccountSnapshot
    assessment: Assessment
    run: RunFacts
    today: date
    tools: Registry
    csm: dict[str, str] | None
    language: str | None


def _validate(
    call: ToolCall, granted: set[str], steps: list[_Step], inp: _Inputs
) -> tuple[ProposedAction | None, list[str]]:
    """One tool call as a ProposedAction, or why not."""
    spec, account = inp.spec, inp.account
    if call.name not in granted:
        return None, [f"planner.tool_not_granted: {call.name} is not one of this agent's tools"]
    model = inp.tools.get(call.name).args_model
    if unknown := set(call.arguments) - set(model.model_fields):
        return None, [f"planner.args_invalid: {call.name} has no field(s) {sorted(unknown)}"]
    step = next((s for s in steps if any(o.tool == call.name for o in s.options)), None)
    if step is None:
        return None, [f"planner.not_a_candidate: no candidate step uses {call.name}"]
    to = call.arguments.get("to")
    contact = step.recipients.get(to) if isinstance(to, str) else None
    if "to" in model.model_fields and to is not None and contact is None:
        return None, ["planner.recipient: not a reachable contact of this account for this step"]
    if contact is None and step.step.to:
        contact = playbook.pick_contact(account, step.step.to)
    options = [o for o in step.options if o.tool == call.name]
    pct_arg = call.arguments.get("discount_pct")
    pct = float(pct_arg) if isinstance(pct_arg, (int, float)) else None
    # Priced as the catalogue's nearest offer; the discount itself is the argument's.
    option = min(options, key=lambda o: abs(o.discount_pct - (pct if pct is not None else 0)))
    fields = playbook.merge_fields(
        spec,
        account,
        inp.assessment,
        inp.run,
        inp.today,
        contact=contact,
        option=option,
        csm=inp.csm,
    )
    try:
        rendered, why = playbook.render_args(
            spec,
            step.step,
            fields,
            inp.language or (contact.language if contact else "en"),
            set(model.model_fields),
        )
    except TemplateProblem as err:
        return None, [f"planner.template: {err}"]
    try:
        args = model.model_validate({**rendered, **call.arguments}).model_dump(mode="json")
    except ValidationError as err:
        fields_wrong = sorted({".".join(map(str, e["loc"])) for e in err.errors()})
        return None, [f"planner.args_invalid: {call.name} fields {fields_wrong}"]
    if "to" in args and args["to"] not in step.recipients:
        return None, ["planner.recipient: not a reachable contact of this account for this step"]
    discount = float(args.get("discount_pct", 0) or 0)
    action = ProposedAction(
        tool=call.name,
        args=args,
        reason=why or f"{spec.name}: {step.step.id} ({option.name})",
        expected_cost=cost_of(
            option, segment=account.segment, arr=account.arr, discount_pct=discount
        ),
        expected_uplift=min(1.0, playbook.effect_of(spec, option, account.segment)),
        discount_pct=discount,
        category=option.category,  # type: ignore[arg-type]
        high_touch=option.high_touch,
        hours=option.hours,
        step=step.step.id,
        option=option.name,
    )
    csm_email = (inp.csm or {}).get("email", "")
    found = drafting.check(action, account, inp.today, csm_email)
    return (None, [f"{v.code}: {v.msg}" for v in found]) if found else (action, [])


def plan_with_llm(
    spec: AgentSpec,
    account: AccountSnapshot,
    assessment: Assessment,
    run: RunFacts,
    today: date,
    *,
    config: LlmConfig,
    chat: ChatFn,
    tools: Registry,
    cursor: int = 0,
    event: dict[str, Any] | None = None,
    room: playbook.Room | None = None,
    rejected: dict[str, str] | None = None,
    learned: dict[str, tuple[float, int]] | None = None,
    csm: dict[str, str] | None = None,
    language: str | None = None,
    texts: Sequence[DataText] = (),
    knowledge: Sequence[DataText] = (),
) -> LlmPlan:
    room = room or playbook.Room()
    rejected = rejected or {}
    reason = playbook.exit_reason(spec, account, run, today, first=cursor == 0)
    if reason is not None:
        return LlmPlan(StretchPlan(actions=[], notes=[], exit=reason))
    steps, next_cursor, wait_s = playbook.stretch(spec, cursor)
    notes: list[Note] = []
    ctx = playbook.context(account, run, today, event)
    cands = _candidates(spec, account, steps, ctx, room, rejected, notes)
    plan = LlmPlan(StretchPlan(actions=[], notes=notes, next_cursor=next_cursor, wait_s=wait_s))
    if not cands:
        return plan  # nothing to decide: no model call, no cost
    inp = _Inputs(spec, account, assessment, run, today, tools, csm, language)
    defs = granted_tools(spec, tools)
    granted = {d.name for d in defs}
    msgs = prompt.messages(
        spec,
        account,
        assessment,
        [_describe(c, account, spec) for c in cands],
        limits_left={
            "budget": room.budget,
            "high_touch_left": room.high_touch_left,
            "contacts_left": room.contacts_left,
        },
        facts={"run": run.as_cel(today), "event": event or {}},
        rejected=rejected,
        texts=texts,
        knowledge=knowledge,
    )
    valid: list[ProposedAction] = []
    for _ in range(2):  # the answer, and one repair
        result = chat(config, msgs, defs)
        plan.cost += result.cost
        valid, errors = [], []
        for call in result.tool_calls:
            action, why = _validate(call, granted, cands, inp)
            errors += why
            if action is not None:
                valid.append(action)
        plan.attempts.append(Attempt(list(result.tool_calls), errors))
        if not errors:
            break
        msgs = [
            *msgs,
            Message(role="assistant", content=result.text, tool_calls=result.tool_calls),
            *(
                Message(role="tool", tool_call_id=c.id, content="checked")
                for c in result.tool_calls
            ),
            prompt.repair(errors),
        ]
    else:
        plan.fail_safe = "; ".join(plan.attempts[-1].errors)
        notes.append(Note(step=FAIL_SAFE, outcome="llm_failed", detail=plan.fail_safe))
        plan.stretch.actions = [review_action(spec, account, plan.fail_safe, csm)]
        return plan
    plan.stretch.actions = _choose(spec, cands, valid, account, room, learned, notes)
    return plan


def _describe(c: _Step, account: AccountSnapshot, spec: AgentSpec) -> Candidate:
    return Candidate(
        step=c.step.id,
        reason=c.step.reason,
        recipients=sorted(c.recipients),
        options=[
            {
                "name": o.name,
                "tool": o.tool,
                "cost": cost_of(o, segment=account.segment, arr=account.arr),
                "uplift": playbook.effect_of(spec, o, account.segment),
                "discount_pct": o.discount_pct,
                "high_touch": o.high_touch,
            }
            for o in c.options
        ],
    )


def _choose(
    spec: AgentSpec,
    cands: list[_Step],
    valid: list[ProposedAction],
    account: AccountSnapshot,
    room: playbook.Room,
    learned: dict[str, tuple[float, int]] | None,
    notes: list[Note],
) -> list[ProposedAction]:
    """Per step, the optimizer's mix among the options the model proposed."""
    budget = room.budget
    chosen: list[ProposedAction] = []
    for c in cands:
        mine = [a for a in valid if a.step == c.step.id]
        if not mine:
            notes.append(
                Note(step=c.step.id, outcome="skipped", detail="the model proposed nothing")
            )
            continue
        by_option = {a.option: a for a in mine}  # one action per option: the first proposed
        options = [o for o in c.options if o.name in by_option]
        picked, note = playbook._choose(  # pyright: ignore[reportPrivateUsage] - the offline path's solver call
            spec, c.step, options, account, budget, room, learned
        )
        notes.append(note)
        for o in picked:
            budget -= by_option[o.name].expected_cost
            chosen.append(by_option[o.name])
    return chosen[: spec.limits.max_actions_per_run]


def review_action(
    spec: AgentSpec, account: AccountSnapshot, reason: str, csm: dict[str, str] | None
) -> ProposedAction:
    """The fail-safe: a task for the account's CSM to review the plan the model could not
    give, with the reason. It sends nothing to the customer."""
    return ProposedAction(
        tool="create_csm_task",
        args={
            "account_id": account.id,
            "assignee": (csm or {}).get("id") or account.owner_csm,
            "title": f"Review the {spec.name} agent's plan: the model's answer was refused",
            "detail": reason[:1500],
            "due_days": 1,
        },
        reason=f"{spec.name}: the LLM planner's answer failed validation twice",
        expected_cost=0.0,
        expected_uplift=0.0,
        category="operational",
        step=FAIL_SAFE,
        option=FAIL_SAFE,
    )
