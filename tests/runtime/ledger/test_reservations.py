"""Actions in flight reserve the budget: two runs racing for a budget that only one
fits cannot both pass the gate (real SQLite, real Rego)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

from sqlmodel import Session, select

from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.account import AccountSnapshot
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.policy import ActorIn
from autopilot.runtime.ledger.spend import ledger, quarter_limits
from autopilot.runtime.policy.gate import Reservation, gate_action
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.services import Services, build_services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.db import transaction

NOW = datetime(2026, 11, 25, 10, tzinfo=UTC)
ARR = 10_000.0  # smb: 12 % of ARR a quarter = a budget of 1,200


def _services(tmp_path: Path, database_url: str) -> tuple[Services, AccountSnapshot]:
    svc = build_services(Settings(data_dir=tmp_path, database_url=database_url), clock=lambda: NOW)
    with transaction(svc.db) as s:
        s.add(Account(id="acc-race", name="Race Ltd", segment="smb", region="eu", arr=ARR, seats_purchased=10,
                      seats_used=9, active_users_30d=8, logins_30d=100, renewal_date=date(2027, 3, 1),
                      owner_csm="demo:dana"))
    snapshot = AccountSnapshot(id="acc-race", name="Race Ltd", segment="smb", region="eu", arr=ARR, seats_purchased=10,
                               seats_used=9, active_users_30d=8, logins_30d=100, open_tickets=0, p1_open=0, nps=8,
                               sentiment=0.2, payment_failures_90d=0, renewal_date=date(2027, 3, 1),
                               owner_csm="demo:dana", health=40.0, churn_risk=0.6)
    return svc, snapshot


def _task(cost: float) -> ProposedAction:
    return ProposedAction(tool="create_csm_task", args={"account_id": "acc-race", "assignee": "demo:dana",
                                                        "title": "Rescue session", "detail": "", "due_days": 3},
                          reason="race", expected_cost=cost, expected_uplift=0.1, category="rescue")


async def _race(svc: Services, snapshot: AccountSnapshot, costs: list[float]) -> list[str]:
    spec = svc.specs["adoption"]
    decisions = await asyncio.gather(*(
        gate_action(svc, run_key=f"run-{i}", action=_task(cost), account=snapshot, spec=spec,
                    actor=ActorIn(type="agent", id=spec.name), pinned_bundle=svc.policy.bundle_hash,
                    reserve=Reservation(key=f"run-{i}", workflow_id=f"wf-{i}", agent=spec.name))
        for i, cost in enumerate(costs)))
    return [d.outcome for d in decisions]


async def test_two_runs_racing_for_one_budget_exactly_one_passes(tmp_path: Path, database_url: str) -> None:
    svc, snapshot = _services(tmp_path, database_url)
    for _ in range(3):  # a few rounds: the interleaving differs from round to round
        with transaction(svc.db) as s:
            for row in s.exec(select(ActionRecord)):
                s.delete(row)
        outcomes = await _race(svc, snapshot, [700.0, 700.0])
        assert sorted(outcomes) == ["allow", "deny"], outcomes
        with Session(svc.db) as s:
            statuses = sorted(r.status for r in s.exec(select(ActionRecord)))
            spent = ledger(s, account_id="acc-race", segment="smb", now=NOW)
        assert statuses == ["allowed", "denied"]
        assert spent.account_spend_quarter == 700.0  # the reservation counts before anything ran


async def test_a_reservation_is_released_when_its_action_is_denied_or_rejected(tmp_path: Path, database_url: str) -> None:
    svc, snapshot = _services(tmp_path, database_url)
    assert await _race(svc, snapshot, [700.0]) == ["allow"]
    with transaction(svc.db) as s:
        row = s.get(ActionRecord, "run-0")
        assert row is not None
        row.status = "rejected"
        s.add(row)
    with Session(svc.db) as s:
        assert ledger(s, account_id="acc-race", segment="smb", now=NOW).account_spend_quarter == 0.0
        account = s.get(Account, "acc-race")
        assert account is not None
        # The optimizer sees the same ledger and the active bundle's limits.
        assert quarter_limits(s, account, read_limits(svc.policy), now=NOW).budget == 1200.0


async def test_an_action_regated_under_its_own_key_does_not_count_against_itself(tmp_path: Path, database_url: str) -> None:
    svc, snapshot = _services(tmp_path, database_url)
    assert await _race(svc, snapshot, [1000.0]) == ["allow"]
    spec = svc.specs["adoption"]
    again = await gate_action(svc, run_key="run-0/retry", action=_task(1000.0), account=snapshot, spec=spec,
                              actor=ActorIn(type="agent", id=spec.name), pinned_bundle=svc.policy.bundle_hash,
                              reserve=Reservation(key="run-0", workflow_id="wf-0", agent=spec.name))
    assert again.outcome == "allow"


async def test_a_person_with_an_action_in_flight_counts_as_just_contacted(tmp_path: Path, database_url: str) -> None:
    from autopilot.runtime.contracts.account import ContactInfo

    svc, snapshot = _services(tmp_path, database_url)
    snapshot = snapshot.model_copy(update={"contacts": [
        ContactInfo(id="c1", name="Champ", email="champ@race.example", role="champion", timezone="UTC")]})
    spec = svc.specs["churn_rescue"]
    outcomes = []
    for i in range(2):  # the first is reserved, not yet sent, when the second is gated
        email = ProposedAction(tool="send_email", args={"to": "champ@race.example", "subject": f"s{i}", "body": "b"},
                               reason="r", expected_cost=0.5, expected_uplift=0.05)
        decision = await gate_action(svc, run_key=f"k{i}", action=email, account=snapshot, spec=spec,
                                     actor=ActorIn(type="agent", id=spec.name), pinned_bundle=svc.policy.bundle_hash,
                                     reserve=Reservation(key=f"k{i}", workflow_id=f"wf{i}", agent=spec.name))
        outcomes.append((decision.outcome, [v.code for v in decision.deny]))
    assert outcomes[0][0] != "deny" and outcomes[1] == ("deny", ["contact.cooldown"])


async def test_a_reservation_whose_run_died_lapses(tmp_path: Path, database_url: str) -> None:
    from datetime import timedelta

    svc, snapshot = _services(tmp_path, database_url)
    assert await _race(svc, snapshot, [700.0]) == ["allow"]
    later = NOW + timedelta(hours=2)  # allowed, never executed, never recorded: the run died
    with Session(svc.db) as s:
        assert ledger(s, account_id="acc-race", segment="smb", now=NOW).account_spend_quarter == 700.0
        assert ledger(s, account_id="acc-race", segment="smb", now=later).account_spend_quarter == 0.0
