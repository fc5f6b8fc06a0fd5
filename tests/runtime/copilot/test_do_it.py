""" "Do it": a Copilot suggestion enters the same durable path as any agent's action —
the copilot agent's run, the policy gate, the approval inbox — and nothing is sent
before a person approves. The client names the suggestion; it never supplies the
action: a tampered request is refused and starts nothing."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.store.accounts import Contact
from autopilot.runtime.store.events import Event
from tests.conftest import Stack, wait_for


async def _suggestions(stack: Stack, account: str, user: str) -> dict[str, dict[str, Any]]:
    r = await stack.http.post(
        "/copilot/ask",
        json={"account_id": account, "question": "Draft an email to the champion"},
        headers=stack.headers(user),
    )
    assert r.status_code == 200, r.text
    return {s["kind"]: s for s in r.json()["suggestions"]}


def _contacts(stack: Stack, account: str) -> set[str]:
    with Session(stack.db) as s:
        return {c.email for c in s.exec(select(Contact).where(Contact.account_id == account))}


def _copilot_events(stack: Stack) -> list[Event]:
    with Session(stack.db) as s:
        return list(s.exec(select(Event).where(Event.type == "copilot")))


async def test_do_it_on_a_draft_email_lands_in_the_inbox_and_sends_nothing_before_approval(
    stack: Stack,
) -> None:
    # A small account, where the policy alone would let an agent's email go out: the
    # Copilot's still waits for the CSM (its agent asks for every action).
    (account,) = stack.pick("smb", max_arr=50_000, min_health=0, strict=False)
    csm = stack.owner(account)
    draft = (await _suggestions(stack, account, csm))["email_champion"]
    assert draft["tool"] == "send_email" and draft["args"]["to"] in _contacts(stack, account)
    r = await stack.http.post(
        f"/copilot/suggestions/{draft['id']}/do",
        json={"account_id": account, "payload_hash": draft["payload_hash"]},
        headers=stack.headers(csm),
    )
    assert r.status_code == 202, r.text
    started = r.json()
    assert started["status"] == "started" and started["workflow_id"].startswith(
        f"agent:copilot:{account}:"
    )
    row = await wait_for(
        lambda: next(
            (a for a in stack.approval_rows() if a.workflow_id == started["workflow_id"]), None
        ),
        what="the copilot's inbox item",
    )
    # The item is the action the card showed (same tool, arguments and hash), from the gate.
    assert row.status == "pending" and row.agent == "copilot" and row.tool == "send_email"
    assert row.payload_hash == draft["payload_hash"]
    assert row.action["args"] == draft["args"]
    assert row.decision.get("bundle_hash")
    assert stack.mails() == []  # nothing sent before approval
    status = await stack.http.get(
        f"/copilot/requests/{started['request_id']}", headers=stack.headers(csm)
    )
    assert status.status_code == 200 and status.json()["approval"]["id"] == row.id
    (item,) = await stack.pending_for(account, user=csm)
    assert item["id"] == row.id
    await stack.approve_fully(item)
    mails = await wait_for(stack.mails, what="the approved email")
    assert [m.rcpt_to for m in mails] == [draft["args"]["to"]]


async def test_a_tampered_request_is_refused_and_starts_nothing(stack: Stack) -> None:
    account, other = stack.pick("enterprise", n=2, min_health=0, strict=False)
    csm = stack.owner(account)
    draft = (await _suggestions(stack, account, csm))["email_champion"]
    h = stack.headers(csm)
    url = f"/copilot/suggestions/{draft['id']}/do"
    # The action cannot be sent along: only the suggestion's id, account and hash.
    for extra, value in (
        ("args", {"to": "ceo@evil.example", "body": "50% discount"}),
        ("tool", "send_offer"),
        ("to", "ceo@evil.example"),
    ):
        r = await stack.http.post(url, json={"account_id": account, extra: value}, headers=h)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == extra, r.text
    # A card edited to an outside recipient no longer matches what the server derives.
    tampered = ProposedAction.model_validate(
        {
            "tool": draft["tool"],
            "args": {**draft["args"], "to": "ceo@evil.example"},
            "reason": "",
            "expected_cost": 0,
            "expected_uplift": 0,
        }
    )
    r = await stack.http.post(
        url, json={"account_id": account, "payload_hash": tampered.payload_hash}, headers=h
    )
    assert r.status_code == 409 and r.json()["detail"][0]["loc"][-1] == "payload_hash"
    # Another account's suggestion, or a made-up one, is not found for this account.
    if stack.owner(other) == csm:
        theirs = (await _suggestions(stack, other, csm))["email_champion"]["id"]
        r = await stack.http.post(
            f"/copilot/suggestions/{theirs}/do", json={"account_id": account}, headers=h
        )
        assert r.status_code == 404
    r = await stack.http.post(
        "/copilot/suggestions/sug_" + "f" * 20 + "/do", json={"account_id": account}, headers=h
    )
    assert r.status_code == 404 and r.json()["detail"][0]["loc"][-1] == "suggestion_id"
    r = await stack.http.post(
        "/copilot/suggestions/send_offer/do", json={"account_id": account}, headers=h
    )
    assert r.status_code == 422
    assert _copilot_events(stack) == [] and stack.approval_rows() == []


async def test_an_inbox_edit_to_an_outside_recipient_is_denied_by_the_gate(stack: Stack) -> None:
    (account,) = stack.pick("enterprise", min_health=0, strict=False)
    csm = stack.owner(account)
    draft = (await _suggestions(stack, account, csm))["email_champion"]
    r = await stack.http.post(
        f"/copilot/suggestions/{draft['id']}/do",
        json={"account_id": account},
        headers=stack.headers(csm),
    )
    assert r.status_code == 202
    (item,) = await stack.pending_for(account, user=csm)
    r = await stack.http.post(
        f"/approvals/{item['id']}/edit",
        json={"payload_hash": item["payload_hash"], "args": {"to": "ceo@evil.example"}},
        headers=stack.headers(csm),
    )
    # The edit goes through the gate again: an address that is no contact is denied.
    assert r.status_code == 200, r.text
    assert (
        r.json()["codes"] == ["contact.recipient_missing"] and r.json()["new_approval_id"] is None
    )
    assert all("evil.example" not in m.rcpt_to for m in stack.mails())
    assert not [
        a
        for a in stack.approval_rows("pending")
        if a.action["args"].get("to") == "ceo@evil.example"
    ]
