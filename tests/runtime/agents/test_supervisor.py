"""The account supervisor on the real gate (Rego, SQLite ledger): two agents contend for
one contact and one budget; priority settles it, and racing gates cannot both win."""

from __future__ import annotations

import asyncio

from sqlmodel import Session, select

from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.policy import ActorIn
from autopilot.runtime.policy.gate import Reservation, gate_action
from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord, SupervisorConflict
from tests.conftest import Stack


def _email(to: str, cost: float = 0.5) -> ProposedAction:
    return ProposedAction(tool="send_email", args={"to": to, "subject": "s", "body": "b"},
                          reason="test", expected_cost=cost, expected_uplift=0.05, option="education_email")


async def _gate(stack: Stack, agent: str, key: str, action: ProposedAction, account_id: str):  # type: ignore[no-untyped-def]
    svc = stack.services
    with Session(svc.db) as s:
        snapshot = get_snapshot(s, account_id=account_id, today=svc.clock().date())
    assert snapshot is not None
    return await gate_action(svc, run_key=key, action=action, account=snapshot, spec=svc.specs[agent],
                             actor=ActorIn(type="agent", id=agent), pinned_bundle=None,
                             reserve=Reservation(key=key, workflow_id=f"agent:{agent}:{account_id}", agent=agent))


def _status(stack: Stack, key: str) -> str:
    with Session(stack.db) as s:
        row = s.get(ActionRecord, key)
        assert row is not None
        return row.status


def _conflicts(stack: Stack) -> list[SupervisorConflict]:
    with Session(stack.db) as s:
        return list(s.exec(select(SupervisorConflict)))


async def test_the_higher_priority_agent_takes_the_contact_and_the_lower_yields(stack: Stack) -> None:
    account, = stack.pick("smb", max_arr=50_000)
    with Session(stack.db) as s:
        snap = get_snapshot(s, account_id=account, today=stack.services.clock().date())
        assert snap is not None
        champion = next(c.email for c in snap.contacts if c.role == "champion")
    low = await _gate(stack, "adoption", "low/0", _email(champion), account)
    assert low.allow and _status(stack, "low/0") in ("allowed", "pending")
    high = await _gate(stack, "churn_rescue", "high/0", _email(champion), account)
    assert high.allow, high.deny
    assert _status(stack, "low/0") == "preempted"  # its reservation is released; it cannot execute
    assert [(c["kind"], c["other_agent"], c["outcome"]) for c in high.conflicts] == [("contact", "adoption", "preempted")]
    # Now the lower-priority agent comes back for the same person: it yields to what is held.
    again = await _gate(stack, "adoption", "low/1", _email(champion), account)
    assert not again.allow and "contact.cooldown" in {v.code for v in again.deny}
    assert [(c["other_agent"], c["outcome"]) for c in again.conflicts] == [("churn_rescue", "deferred")]
    rows = _conflicts(stack)
    assert {(r.winner_agent, r.other_agent, r.outcome) for r in rows} == {
        ("churn_rescue", "adoption", "preempted"), ("churn_rescue", "adoption", "deferred")}


async def test_the_budget_goes_to_the_higher_priority_agent(stack: Stack) -> None:
    account = stack.pick("smb", max_arr=50_000)[0]
    arr = stack.account(account).arr
    budget = arr * 0.12  # the SMB account budget in the shipped policy: 12 % of ARR a quarter
    big = ProposedAction(tool="create_csm_task",
                         args={"account_id": account, "assignee": "x", "title": "t", "detail": "d", "due_days": 2},
                         reason="test", expected_cost=round(budget * 0.7, 2), expected_uplift=0.1)
    low = await _gate(stack, "adoption", "low/b", big, account)
    assert low.allow, low.deny
    high = await _gate(stack, "churn_rescue", "high/b", big, account)  # both do not fit
    assert high.allow, high.deny
    assert _status(stack, "low/b") == "preempted"
    assert [(c["kind"], c["outcome"]) for c in high.conflicts] == [("budget", "preempted")]


async def test_racing_gates_for_one_contact_leave_one_holder(stack: Stack) -> None:
    accounts = stack.pick("smb", max_arr=50_000)
    account = accounts[0]
    with Session(stack.db) as s:
        snap = get_snapshot(s, account_id=account, today=stack.services.clock().date())
        assert snap is not None
        champion = next(c.email for c in snap.contacts if c.role == "champion")
    decisions = await asyncio.gather(*[
        _gate(stack, agent, f"{agent}/race/{i}", _email(champion), account)
        for i in range(4) for agent in ("adoption", "churn_rescue")
    ])
    with Session(stack.db) as s:
        holders = [r for r in s.exec(select(ActionRecord).where(ActionRecord.recipient == champion))
                   if r.status in ("allowed", "pending")]
    # Exactly one action may be on its way to the champion, and it is the rescue's.
    assert len(holders) == 1 and holders[0].agent == "churn_rescue", [(h.agent, h.status) for h in holders]
    assert sum(d.allow for d in decisions) >= 1


def _offer(to: str, pct: float, arr: float, name: str) -> ProposedAction:
    return ProposedAction(tool="send_offer", args={"to": to, "account_name": name, "discount_pct": pct,
                                                   "valid_days": 30, "term_months": 12},
                          reason="test", expected_cost=round(arr * pct / 100, 2), expected_uplift=0.1,
                          discount_pct=pct, category="commercial", option=f"discount_{pct:g}pct")


async def test_a_cap_the_lower_priority_fills_is_never_overrun(stack: Stack) -> None:
    """Renewal holds a 5 % offer awaiting approval; Churn Rescue wants 10 % (to another
    person). Together they pass the SMB cap of 10 %: the rescue's offer goes through only
    by preempting the renewal's, never beside it."""
    account = stack.pick("smb", max_arr=50_000)[0]
    arr = stack.account(account).arr
    with Session(stack.db) as s:  # a cheap account to serve: the margin floor is not what binds
        row = s.get(Account, account)
        assert row is not None
        row.annual_cost_to_serve = 0.0
        s.add(row)
        s.commit()
        snap = get_snapshot(s, account_id=account, today=stack.services.clock().date())
        assert snap is not None
        emails = sorted(c.email for c in snap.contacts)
    assert len(emails) >= 2
    low = await _gate(stack, "renewal", "low/d", _offer(emails[0], 5, arr, stack.account(account).name), account)
    assert low.allow, low.deny
    high = await _gate(stack, "churn_rescue", "high/d", _offer(emails[1], 6, arr, stack.account(account).name), account)
    assert high.allow, high.deny
    assert _status(stack, "low/d") == "preempted"
    with Session(stack.db) as s:
        held = [r for r in s.exec(select(ActionRecord).where(ActionRecord.account_id == account))
                if r.status in ("allowed", "pending")]
    assert sum(r.discount_pct for r in held) <= 10


async def test_an_action_being_sent_is_not_preempted(stack: Stack) -> None:
    account = stack.pick("smb", max_arr=50_000)[0]
    with Session(stack.db) as s:
        snap = get_snapshot(s, account_id=account, today=stack.services.clock().date())
        assert snap is not None
        champion = next(c.email for c in snap.contacts if c.role == "champion")
    assert (await _gate(stack, "adoption", "low/x", _email(champion), account)).allow
    with Session(stack.db) as s:  # the execute node claimed it: the email is on its way
        row = s.get(ActionRecord, "low/x")
        assert row is not None
        row.status = "executing"
        s.add(row)
        s.commit()
    high = await _gate(stack, "churn_rescue", "high/x", _email(champion), account)
    assert not high.allow and "contact.cooldown" in {v.code for v in high.deny}
    assert _status(stack, "low/x") == "executing"
