"""The approval inbox's API: who sees and decides what (role × book × tenant),
edits that go through the gate again, bulk decisions, reassignment, comments,
the detail view and digests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.devstack.users import DEMO_USERS, demo_user_id
from autopilot.runtime.approvals.notify import send_digest
from autopilot.runtime.devstack.seed import seed_portfolio
from tests.conftest import NOW, Stack, make_settings, wait_for
from tests.loopback import webhook_server

ORGS = ("demo", "globex")


async def _pending_in(stack: Stack, org: str, segment: str = "enterprise") -> dict[str, Any]:
    account, = stack.pick(segment, min_arr=250_000, max_arr=1_000_000, org_id=org)
    await stack.post_events(drop_events(stack.db, account), user=demo_user_id(org, "adam"))
    item, = await stack.pending_for(account, user=demo_user_id(org, "maria"))
    return item


async def test_role_book_tenant_matrix_has_no_leak(stack: Stack) -> None:
    seed_portfolio(stack.db, n=80, today=NOW.date(), org_id="globex", prefix="glx")
    items = {org: await _pending_in(stack, org) for org in ORGS}
    owners = {org: stack.owner(items[org]["account_id"]) for org in ORGS}
    checked = 0
    for user_org in ORGS:
        for handle, _name, roles in DEMO_USERS:
            user = demo_user_id(user_org, handle)
            h = stack.headers(user)
            listed = {a["id"] for a in (await stack.http.get("/approvals", headers=h)).json()}
            for item_org in ORGS:
                item = items[item_org]
                visible = user_org == item_org and (set(roles) != {"csm"} or user == owners[item_org])
                assert (item["id"] in listed) == visible, (user, item_org)
                detail = await stack.http.get(f"/approvals/{item['id']}", headers=h)
                assert detail.status_code == (200 if visible else 404), (user, item_org)
                filtered = await stack.http.get("/approvals", params={"account_id": item["account_id"]}, headers=h)
                assert bool(filtered.json()) == visible
                comment = await stack.http.post(f"/approvals/{item['id']}/comments", json={"text": "hi"}, headers=h)
                assert comment.status_code == (201 if visible else 404)
                # A decision or edit from outside the book or tenant is refused and changes
                # nothing: 404 as for a missing item (403 first for roles that never decide,
                # which says nothing about the item).
                if not visible:
                    refused = 404 if set(roles) & {"csm", "manager", "finance", "legal", "vp"} else 403
                    r = await stack.http.post(f"/approvals/{item['id']}/decision", headers=h, json={
                        "verdict": "approve", "payload_hash": item["payload_hash"]})
                    assert r.status_code == refused, (user, item_org, r.text)
                    r = await stack.http.post(f"/approvals/{item['id']}/edit", headers=h, json={
                        "payload_hash": item["payload_hash"], "args": {"subject": "x"}})
                    assert r.status_code == refused, (user, item_org, r.text)
                else:
                    expected = "csm" if set(roles) & {"csm", "manager", "vp"} else None
                    assert detail.json()["can_decide_as"] == expected, (user, roles)
                checked += 1
    assert checked == 2 * 2 * len(DEMO_USERS)
    # Roles that cannot decide are refused even inside their organisation.
    for handle in ("audrey", "adam"):
        r = await stack.decide(items["demo"], "approve", user=handle)
        assert r.status_code == 403
    assert all(row.status == "pending" for row in stack.approval_rows())
    assert stack.mails() == []


async def test_edit_is_regated_and_may_need_a_higher_role_or_be_denied(stack: Stack) -> None:
    account, = stack.pick("mid_market", min_arr=50_000)
    wf_id, = await stack.post_events(drop_events(stack.db, account))
    offer, = await stack.pending_for(account)  # the email went out on its own
    assert offer["tool"] == "send_offer" and "finance" not in offer["roles"]
    csm = stack.owner(account)
    # The run's history so far is on the item: the email that went out on its own.
    d = (await stack.http.get(f"/approvals/{offer['id']}", headers=stack.headers(csm))).json()
    assert [h["step"] for h in d["history"]] == ["record", "execute", "gate", "plan"]
    assert [a["tool"] for a in d["alternatives"]] == ["send_email"]

    # A field the tool does not have, or a value its schema refuses: 422, nothing changes.
    bad = await stack.http.post(f"/approvals/{offer['id']}/edit", headers=stack.headers(csm),
                                json={"payload_hash": offer["payload_hash"], "args": {"coupon": "FREE"}})
    assert bad.status_code == 422 and "coupon" in bad.text
    bad = await stack.http.post(f"/approvals/{offer['id']}/edit", headers=stack.headers(csm),
                                json={"payload_hash": offer["payload_hash"], "args": {"discount_pct": 120}})
    assert bad.status_code == 422
    stale = await stack.http.post(f"/approvals/{offer['id']}/edit", headers=stack.headers(csm),
                                  json={"payload_hash": "a" * 64, "args": {"discount_pct": 12}})
    assert stale.status_code == 409

    # 15.5 % on a 36-month term passes the mid-market cap (15 + 5 for the term) and the
    # account's budget but crosses the finance threshold: a new item that needs finance
    # too; the CSM's old vote does not carry over.
    assert (await stack.decide(offer, "approve")).json()["remaining_roles"] == ["manager"]
    r = await stack.http.post(f"/approvals/{offer['id']}/edit", headers=stack.headers(csm),
                              json={"payload_hash": offer["payload_hash"],
                                    "args": {"discount_pct": 15.5, "term_months": 36},
                                    "reason": "they asked for more"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "superseded" and "finance" in out["remaining_roles"], out["codes"]
    edited, = await stack.pending_for(account)
    assert edited["id"] == out["new_approval_id"] and edited["edited_from"] == offer["id"]
    assert edited["action"]["args"]["discount_pct"] == 15.5 and edited["votes"] == []
    assert set(edited["roles"]) == {"csm", "manager", "finance"}
    # The old payload is gone: a vote on it is refused.
    assert (await stack.decide(offer, "approve", user="maria")).status_code == 409

    # 35 % is over the cap: the gate denies the edit, nothing will run.
    r = await stack.http.post(f"/approvals/{edited['id']}/edit", headers=stack.headers("maria"),
                              json={"payload_hash": edited["payload_hash"], "args": {"discount_pct": 35}})
    assert r.status_code == 200, r.text
    assert r.json()["new_approval_id"] is None and any("cap" in c for c in r.json()["codes"])
    result = await stack.run_result(wf_id)
    assert [o.status for o in result.outcomes] == ["executed", "denied"]
    assert len(stack.mails()) == 1  # the email only; no offer went out
    # The denied edit closes its item with the gate's reason: nothing is left pending.
    closed = next(a for a in stack.approval_rows() if a.id == edited["id"])
    assert closed.status == "denied" and "discount.above_cap" in (closed.decision_reason or "")
    listed = (await stack.http.get("/approvals", headers=stack.headers("maria"))).json()
    assert [a for a in listed if a["account_id"] == account] == []


async def test_bulk_reassign_comments_and_detail(stack: Stack) -> None:
    accounts = stack.pick("enterprise", n=3, min_arr=250_000, max_arr=1_000_000)
    for account in accounts:
        await stack.post_events(drop_events(stack.db, account))
    items = [(await stack.pending_for(a))[0] for a in accounts]

    # The detail: the dry-run preview, the decision with its reasons, health factors, history.
    d = (await stack.http.get(f"/approvals/{items[0]['id']}", headers=stack.headers("maria"))).json()
    assert d["preview"]["delivered"] is False and d["preview"]["to"].endswith(".example")
    assert d["preview"]["subject"] and "Message-ID: <" in d["preview"]["preview"]
    assert d["decision"]["require_approval"] and d["decision"]["approval"][0]["reason"]
    h = d["health"]  # Health 2.0: the factors' contributions add up to the score
    assert h["baseline"] + sum(f["contribution"] for f in h["factors"]) == pytest.approx(h["health"], abs=1e-6)
    assert d["optimizer"]["best"]["total_cost"] <= d["optimizer"]["limits"]["budget"]
    assert stack.mails() == []  # a preview sends nothing

    # Reassign: only managers; to a CSM of the organisation; the new CSM then sees it.
    other = next(h for h, _n, roles in DEMO_USERS if roles == ["csm"] and h != stack.owner(accounts[0]))
    assert (await stack.http.get(f"/approvals/{items[0]['id']}", headers=stack.headers(other))).status_code == 404
    r = await stack.http.post(f"/approvals/{items[0]['id']}/reassign", json={"to": other},
                              headers=stack.headers(stack.owner(accounts[0])))
    assert r.status_code == 403
    r = await stack.http.post(f"/approvals/{items[0]['id']}/reassign", json={"to": "globex.alice"},
                              headers=stack.headers("maria"))
    assert r.status_code == 422
    r = await stack.http.post(f"/approvals/{items[0]['id']}/reassign", json={"to": other},
                              headers=stack.headers("maria"))
    assert r.status_code == 200 and r.json()["assigned_to"] == other
    seen = await stack.http.get(f"/approvals/{items[0]['id']}", headers=stack.headers(other))
    assert seen.status_code == 200 and seen.json()["can_decide_as"] == "csm"
    r = await stack.http.post(f"/approvals/{items[0]['id']}/comments", json={"text": "call them first"},
                              headers=stack.headers(other))
    assert r.status_code == 201
    comments = (await stack.http.get(f"/approvals/{items[0]['id']}", headers=stack.headers("maria"))).json()["comments"]
    assert [c["text"] for c in comments] == [f"reassigned to {other}", "call them first"]

    # Bulk: a result per item; a stale hash fails alone, the rest go through.
    body = {"verdict": "approve", "items": [
        {"id": items[0]["id"], "payload_hash": items[0]["payload_hash"]},
        {"id": items[1]["id"], "payload_hash": "b" * 64},
        {"id": items[2]["id"], "payload_hash": items[2]["payload_hash"]},
        {"id": "apr_nope", "payload_hash": "c" * 64}]}
    results = (await stack.http.post("/approvals/bulk", json=body, headers=stack.headers("maria"))).json()
    assert [(x["ok"], x["status_code"]) for x in results] == [(True, 200), (False, 409), (True, 200), (False, 404)]
    await wait_for(lambda: len(stack.mails()) == 2, what="two approved emails")
    rejected = (await stack.http.post("/approvals/bulk", headers=stack.headers("maria"), json={
        "verdict": "reject", "items": [{"id": items[1]["id"], "payload_hash": "b" * 64}]}))
    assert rejected.status_code == 422  # a bulk reject needs its reason
    results = (await stack.http.post("/approvals/bulk", headers=stack.headers("maria"), json={
        "verdict": "reject", "reason": "not now",
        "items": [{"id": items[1]["id"], "payload_hash": items[1]["payload_hash"]}]})).json()
    assert results[0]["ok"] and results[0]["status"] == "rejected"
    statuses = {r.id: r.status for r in stack.approval_rows()}
    assert [statuses[i["id"]] for i in items] == ["approved", "rejected", "approved"]


async def test_digest_per_approver_by_email_and_webhook(stack_factory: Any, tmp_path: Path) -> None:
    with webhook_server() as hook:
        settings = make_settings(tmp_path, slack_webhook_url=hook.url)
        async with stack_factory(settings=settings) as stack:
            accounts = stack.pick("enterprise", n=2, min_arr=250_000, max_arr=1_000_000)
            for account in accounts:
                await stack.post_events(drop_events(stack.db, account))
                await stack.pending_for(account)
            per_user = send_digest(stack.services, org_id="demo")
            owners = {stack.owner(a) for a in accounts}
            # The owners, and the line above them; not finance/legal, auditors or other CSMs.
            assert set(per_user) == owners | {"maria", "vera"}
            assert per_user["maria"] == 2 and all(per_user[o] == sum(stack.owner(a) == o for a in accounts)
                                                  for o in owners)
            digests = [m for m in stack.mails() if "wait for you" in m.subject]
            assert sorted(m.rcpt_to for m in digests) == sorted(f"{u}@demo.example" for u in per_user)
            assert hook.posts and hook.posts[-1]["per_user"] == per_user
            # The same pending set again: the same Message-IDs, so a resend is recognisable.
            send_digest(stack.services, org_id="demo")
            again = [m for m in stack.mails() if "wait for you" in m.subject]
            assert {m.message_id for m in again} == {m.message_id for m in digests}
