"""The Cost-to-Retain Optimizer: known optima on small catalogues, and never a broken limit."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot.runtime.optimizer.catalogue import CatalogueAction, load_catalogue
from autopilot.runtime.optimizer.solver import Goal, Limits, learn_uplift, optimize


def act(name: str, cost: float, effect: float, *, high_touch: bool = False, group: str | None = None,
        contacts: int = 1) -> CatalogueAction:
    return CatalogueAction(name=name, tool="send_email", channel="email", category="rescue", fixed_cost=cost, hours=0, discount_pct=0,
                           high_touch=high_touch, contacts=contacts, group=group,
                           retention={"smb": effect}, adoption={"smb": effect})


def test_adoption_runner_up_and_the_cheaper_exact_fit() -> None:
    # Need +0.20. By hand: d + b = 0.08 + 0.12 reaches it for 25; a + b (0.22) costs 30;
    # c alone (0.25) costs 50; a + d (0.18) falls short.
    cat = [act("a", 10, 0.10), act("b", 20, 0.12), act("c", 50, 0.25), act("d", 5, 0.08)]
    r = optimize(Goal(kind="adoption", current=0.3, target=0.5), Limits(budget=1000), segment="smb", arr=1,
                 catalogue=cat)
    # d + b = 0.20 exactly for 25: cheaper than a + b. The optimum is {d, b}.
    assert {o.name for o in r.best.actions} == {"b", "d"} and r.best.total_cost == 25
    assert {o.name for o in r.alternatives[0].actions} == {"a", "b"} and r.alternatives[0].total_cost == 30


def test_retention_goal_is_multiplicative_and_respects_the_contact_cap() -> None:
    # Risk 0.5, keep renewal >= 0.8: risk must fall to 0.2, a cut of 60 %.
    # call (0.4) + exec (0.4): 1 - 0.6*0.6 = 0.64 ≥ 0.6 for 300, but both are high-touch.
    cat = [act("call", 100, 0.4, high_touch=True), act("exec", 200, 0.4, high_touch=True),
           act("package", 900, 0.5), act("email", 1, 0.05)]
    both = optimize(Goal(kind="retention", current=0.5, target=0.8), Limits(budget=5000, high_touch_left=2),
                    segment="smb", arr=1, catalogue=cat)
    assert {o.name for o in both.best.actions} == {"call", "exec"} and both.best.total_cost == 300
    one = optimize(Goal(kind="retention", current=0.5, target=0.8), Limits(budget=5000, high_touch_left=1),
                   segment="smb", arr=1, catalogue=cat)
    # One high-touch contact left: call + package = 1 - 0.6*0.5 = 0.7 ≥ 0.6 for 1000.
    assert {o.name for o in one.best.actions} == {"call", "package"} and one.best.total_cost == 1000
    assert one.best.expected == pytest.approx(1 - 0.5 * 0.6 * 0.5)


def test_out_of_reach_goal_is_flagged_with_the_most_the_limits_allow() -> None:
    cat = [act("a", 10, 0.1), act("b", 20, 0.1)]
    r = optimize(Goal(kind="adoption", current=0.1, target=0.9), Limits(budget=25), segment="smb", arr=1,
                 catalogue=cat)
    assert not r.best.feasible and r.best.total_cost <= 25 and len(r.best.actions) == 1


def test_one_discount_at_most() -> None:
    cat = [act("d5", 50, 0.3, group="discount"), act("d10", 100, 0.5, group="discount"), act("x", 1000, 0.5)]
    r = optimize(Goal(kind="retention", current=0.9, target=0.5), Limits(budget=10_000), segment="smb", arr=1,
                 catalogue=cat)
    assert sum(o.name.startswith("d") for o in r.best.actions) <= 1


def brute_force(goal: Goal, limits: Limits, cat: list[CatalogueAction]) -> float | None:
    best = None
    for k in range(len(cat) + 1):
        for combo in itertools.combinations(cat, k):
            cost = sum(a.fixed_cost for a in combo)
            if (cost > limits.budget or sum(a.high_touch for a in combo) > limits.high_touch_left
                    or sum(a.contacts for a in combo) > limits.contacts_left
                    or sum(a.group == "g" for a in combo) > 1):
                continue
            if goal.kind == "adoption":
                ok = goal.current + sum(a.adoption["smb"] for a in combo) >= goal.target - 1e-9
            else:
                ok = goal.current * math.prod(1 - a.retention["smb"] for a in combo) <= 1 - goal.target + 1e-9
            if ok and (best is None or cost < best):
                best = cost
    return best


action_st = st.builds(
    lambda cost, eff, ht, g, c: act(f"a{cost}-{eff}", cost, eff, high_touch=ht, group="g" if g else None, contacts=c),
    st.integers(1, 500), st.floats(0.01, 0.6), st.booleans(), st.booleans(), st.integers(0, 2))


@settings(max_examples=60, deadline=None)
@given(cat=st.lists(action_st, min_size=1, max_size=7, unique_by=lambda a: a.name),
       kind=st.sampled_from(["retention", "adoption"]), current=st.floats(0.05, 0.9), target=st.floats(0.1, 0.99),
       budget=st.integers(0, 1500), high_touch=st.integers(0, 2), contacts=st.integers(0, 5))
def test_never_breaks_a_limit_and_matches_brute_force(cat: list[CatalogueAction], kind: str, current: float,
                                                       target: float, budget: int, high_touch: int,
                                                       contacts: int) -> None:
    goal = Goal(kind=kind, current=current, target=target)  # type: ignore[arg-type]
    limits = Limits(budget=budget, high_touch_left=high_touch, contacts_left=contacts)
    r = optimize(goal, limits, segment="smb", arr=1, catalogue=cat)
    by_name = {a.name: a for a in cat}
    for plan in [r.best, *r.alternatives]:
        chosen = [by_name[o.name] for o in plan.actions]
        assert plan.total_cost <= budget + 1e-6
        assert sum(a.high_touch for a in chosen) <= high_touch
        assert sum(a.contacts for a in chosen) <= contacts
        assert sum(a.group == "g" for a in chosen) <= 1
    expected = brute_force(goal, limits, cat)
    if expected is None:
        assert not r.best.feasible
    else:
        assert r.best.feasible and r.best.total_cost == pytest.approx(expected)


def test_shipped_catalogue_orders_the_cheap_path_first() -> None:
    r = optimize(Goal(kind="adoption", current=0.2, target=0.35), Limits(budget=10_000), segment="smb", arr=20_000,
                 catalogue=load_catalogue())
    assert r.best.feasible
    assert [o.cost for o in r.best.actions] == sorted(o.cost for o in r.best.actions)
    assert {o.name for o in r.best.actions} <= {"education_email", "in_app_guide", "community_invite", "webinar"}
    assert all(o.source == "prior" for o in r.options)


def test_uplift_is_learned_from_outcomes_and_shrunk_to_the_prior() -> None:
    outcomes = ([{"segment": "smb", "actions": [], "retained": i % 2 == 0} for i in range(40)]  # churn 50 %
                + [{"segment": "smb", "actions": ["csm_call"], "retained": i % 4 != 0} for i in range(40)])  # 25 %
    learned = learn_uplift(outcomes, segment="smb")
    assert learned["csm_call"] == (pytest.approx(0.5), 40)
    r = optimize(Goal(kind="retention", current=0.5, target=0.6), Limits(budget=10_000), segment="smb",
                 arr=20_000, learned=learned)
    call = next(o for o in r.options if o.name == "csm_call")
    assert call.effect == pytest.approx((40 * 0.5 + 20 * 0.12) / 60, abs=1e-3) and call.source.startswith("learned")


def test_uplift_is_learned_from_the_store_history(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """At-risk SMB accounts (an alert on record): those that got a CSM task churned less
    than those that got nothing; the optimizer's csm_call effect moves off its prior."""
    from datetime import UTC, date, datetime

    from sqlmodel import Session, select

    from autopilot.runtime.optimizer.uplift import learned_uplift
    from autopilot.runtime.devstack.seed import seed_portfolio
    from autopilot.runtime.store.accounts import Account
    from autopilot.runtime.store.actions import ActionRecord
    from autopilot.runtime.store.customer import RiskAlert
    from autopilot.runtime.store.db import make_engine

    db = make_engine(f"sqlite:///{tmp_path / 'u.db'}")
    seed_portfolio(db, n=200, today=date(2026, 11, 24))
    now = datetime(2026, 11, 24, tzinfo=UTC)
    with Session(db) as s:
        smb = list(s.exec(select(Account).where(Account.segment == "smb").order_by(Account.id)))[:40]
        for i, a in enumerate(smb):
            s.add(RiskAlert(account_id=a.id, risk=0.7, threshold=0.65, reasons=[], model_version="t", at=now))
            treated = i % 2 == 0
            if treated:
                s.add(ActionRecord(run_key=f"k{i}", workflow_id=f"w{i}", agent="adoption", account_id=a.id,
                                   segment="smb", tool="create_csm_task", payload={}, payload_hash="h",
                                   status="executed", created_at=now, updated_at=now))
            if (not treated and i % 4 == 1) or (treated and i % 8 == 0):  # churn: 50 % untreated, 25 % treated
                a.status = "churned"
            s.add(a)
        s.commit()
        learned = learned_uplift(s, smb[0])
    assert learned["csm_call"] == (pytest.approx(0.5), 20)  # 1 - 0.25 / 0.5
    r = optimize(Goal(kind="retention", current=0.5, target=0.6), Limits(budget=10_000), segment="smb",
                 arr=20_000, learned=learned)
    call = next(o for o in r.options if o.name == "csm_call")
    assert call.source == "learned (n=20) + prior" and call.effect != 0.12
    db.dispose()


def test_the_planner_prices_its_actions_from_the_optimizers_catalogue() -> None:
    from datetime import date

    from autopilot.runtime.agents.playbook import RunFacts, plan_stretch
    from autopilot.runtime.agents.specs import load_specs
    from autopilot.runtime.config import Settings
    from autopilot.runtime.contracts.account import AccountSnapshot, Assessment, ContactInfo
    from autopilot.runtime.optimizer.solver import options_for

    account = AccountSnapshot(
        id="acc-1", name="Acme", segment="mid_market", region="eu", arr=120_000, seats_purchased=80,
        seats_used=30, active_users_30d=20, logins_30d=300, open_tickets=0, p1_open=0, nps=4,
        sentiment=-0.5, payment_failures_90d=0, renewal_date=date(2027, 3, 1), owner_csm="dana",
        health=30.0, churn_risk=0.8,
        contacts=[ContactInfo(id="c1", name="Exec", email="exec@acme.example", role="executive_sponsor"),
                  ContactInfo(id="c2", name="Champ", email="champ@acme.example", role="champion")])
    assessment = Assessment(health=30.0, risk=0.8, reasons=[])
    specs = load_specs(Settings().agents_path)
    run = RunFacts(started=date(2026, 11, 1))
    proposed = [
        a
        for name in ("churn_rescue", "adoption")
        for a in plan_stretch(specs[name], account, assessment, run, date(2026, 11, 2)).actions
    ]
    options, _ = options_for(Goal(kind="retention", target=0.8, current=0.8), segment="mid_market", arr=120_000)
    by_name = {o.name: o for o in options}
    email = next(a for a in proposed if a.tool == "send_email")
    assert email.expected_cost == by_name["education_email"].cost
    offer = next(a for a in proposed if a.tool == "send_offer")
    assert offer.expected_cost == by_name[f"discount_{offer.discount_pct:g}pct"].cost
    assert offer.expected_uplift == by_name[f"discount_{offer.discount_pct:g}pct"].effect
    guide = next(a for a in proposed if a.tool == "send_in_app_message")
    assert guide.expected_cost == by_name["in_app_guide"].cost
