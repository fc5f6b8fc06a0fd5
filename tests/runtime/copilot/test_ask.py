"""POST /copilot/ask: answers about one account that cite only that account's facts (each
citation resolves), scoped by book and tenant like every other endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session

from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.devstack.users import DEMO_USERS, demo_user_id
from autopilot.runtime.store.approvals import Approval
from autopilot.runtime.store.customer import CostEntry
from autopilot.runtime.store.events import Event
from tests.conftest import NOW, Stack

QUESTIONS = {
    "summary": "Summarise this account for the QBR",
    "health": "Why is the health score what it is?",
    "open_items": "What is still open?",
    "costs": "What has this account cost us?",
    "email_champion": "Draft an email to the champion",
}


async def _ask(stack: Stack, account: str, question: str, user: str) -> Any:
    return await stack.http.post(
        "/copilot/ask",
        json={"account_id": account, "question": question},
        headers=stack.headers(user),
    )


def _belongs(stack: Stack, cite: str, account: str) -> bool:
    """The cited fact is this account's (or shared knowledge)."""
    kind, _, key = cite.partition(":")
    with Session(stack.db) as s:
        if kind == "event":
            ev = s.get(Event, int(key))
            return ev is not None and ev.account_id == account
        if kind == "approval":
            row = s.get(Approval, key)
            return row is not None and row.account_id == account
        if kind == "cost" and key != "quarter":
            row = s.get(CostEntry, int(key))
            return row is not None and row.account_id == account
    return kind in {"account", "health", "alert", "cost", "contact", "crm", "kb", "action", "check"}


@pytest.mark.parametrize("kind", sorted(QUESTIONS))
async def test_every_answer_cites_only_facts_of_that_account(stack: Stack, kind: str) -> None:
    account, other = stack.pick("enterprise", n=2, min_health=0, strict=False)
    # Facts of both accounts exist: an event and a cost each.
    await stack.post_events(
        [{"account_id": a, "type": "ticket_opened", "priority": "P2"} for a in (account, other)]
    )
    with Session(stack.db) as s:
        for a in (account, other):
            s.add(CostEntry(account_id=a, kind="support", amount=120.0, at=NOW, note="P2 ticket"))
        s.commit()
    r = await _ask(stack, account, QUESTIONS[kind], stack.owner(account))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == kind and body["mode"] == "offline"
    listed = {c["id"] for c in body["citations"]}
    assert body["sentences"] and all(s["cites"] for s in body["sentences"])  # every sentence cites
    for sentence in body["sentences"]:
        for cite in sentence["cites"]:
            assert cite in listed, cite  # each citation resolves to a listed fact
            assert f"[{cite}]" in body["answer"]
            assert _belongs(stack, cite, account), cite
    assert not body["flagged"]
    if kind == "health":
        assert "health:score" in listed
        assert any(c.startswith("health:factor:") for c in listed)
    if kind == "costs":
        assert any(c.startswith("cost:") for c in listed)
    if kind == "email_champion":
        (draft,) = [s for s in body["suggestions"] if s["kind"] == "email_champion"]
        assert any(c.startswith("contact:") for c in listed)
        assert draft["args"]["to"] in body["answer"]


async def test_bad_input_names_the_field(stack: Stack) -> None:
    (account,) = stack.pick("enterprise", min_health=0, strict=False)
    user = stack.owner(account)
    r = await _ask(stack, account, "", user)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "question"
    r = await stack.http.post("/copilot/ask", json={"question": "why"}, headers=stack.headers(user))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "account_id"
    r = await _ask(stack, "no-such-account", "why", user)
    assert r.status_code == 404
    assert (
        await stack.http.post("/copilot/ask", json={"account_id": account, "question": "x"})
    ).status_code == 401


async def test_role_book_tenant_matrix(stack: Stack) -> None:
    """Every demo role of both tenants asks about, and tries "do it" on, one account of
    each tenant: only the tenant's non-CSM roles and the account's own CSM see it; the
    rest get 404, the same as for an account that does not exist."""
    seed_portfolio(stack.db, n=40, today=NOW.date(), org_id="globex", prefix="glx")
    accounts = {
        org: stack.pick("enterprise", min_health=0, strict=False, org_id=org)[0]
        for org in ("demo", "globex")
    }
    checked = 0
    for user_org in accounts:
        for handle, _name, roles in DEMO_USERS:
            user = demo_user_id(user_org, handle)
            for org, account in accounts.items():
                visible = user_org == org and (
                    set(roles) != {"csm"} or user == stack.owner(account)
                )
                r = await _ask(stack, account, "summary", user)
                assert r.status_code == (200 if visible else 404), (user, org, r.text)
                sid = "sug_" + "0" * 20
                if visible:
                    sid = r.json()["suggestions"][0]["id"]
                do = await stack.http.post(
                    f"/copilot/suggestions/{sid}/do",
                    json={"account_id": account, "payload_hash": "0" * 64},
                    headers=stack.headers(user),
                )
                may_act = bool(set(roles) & {"csm", "manager", "vp", "admin"})
                # Stale hash: 409 for those who may act on a visible account; nothing started.
                expected = 403 if not may_act else (409 if visible else 404)
                assert do.status_code == expected, (user, org, do.text)
                checked += 1
    assert checked == 2 * 2 * len(DEMO_USERS)
    assert not stack.approval_rows()
