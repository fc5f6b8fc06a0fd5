"""The customer's side, end to end: a real agent run emails a contact through the SMTP
sink; the message carries RFC 8058 one-click unsubscribe headers and a preferences link;
one POST to the header's URL (real HTTP on loopback) records the choice and the gate
denies the next automated email to that person. Links that are not ours are 4xx."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from autopilot.runtime.consent import tokens
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.store.accounts import Account, Contact
from tests.conftest import NOW, Stack
from tests.preferences import automated_email, codes, consent_rows, gate_next, served_stack


@pytest.fixture
async def served(
    stack_factory: Any, tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[Stack, str]]:
    async with served_stack(stack_factory, tmp_path, database_url) as pair:
        yield pair


async def test_one_click_unsubscribe_stops_the_next_automated_email(
    served: tuple[Stack, str],
) -> None:
    stack, base = served
    sent = await automated_email(stack)
    assert sent.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.fullmatch(
        r"<[0-9a-f]{32}@cs-autopilot>", str(sent.message["Message-ID"])
    )  # as before
    unsubscribe = sent.unsubscribe_url()
    assert unsubscribe.startswith(f"{base}/preferences/") and unsubscribe.endswith("/unsubscribe")
    assert unsubscribe == f"{sent.preferences_url()}/unsubscribe"  # the footer's link, same person
    contact = sent.contact(stack)
    assert "consent.opted_out" not in codes(await gate_next(stack, sent.record))

    # The mail client's one click: a form POST with no cookie, no page.
    async with httpx.AsyncClient() as client:
        r = await client.post(
            unsubscribe,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200, r.text
        again = await client.post(
            unsubscribe,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert again.status_code == 200

    assert consent_rows(stack, contact.id) == [("email", "opt_out", "one_click")]  # recorded once
    assert sent.contact(stack).opted_out
    # The next automated email to them is denied, whether the run saw the account before
    # the click (a run already under way) or after it (a new run).
    assert "consent.opted_out" in codes(await gate_next(stack, sent.record))
    assert "consent.opted_out" in codes(await gate_next(stack, sent.record, snapshot=sent.snapshot))


async def test_links_that_are_not_ours_are_refused_naming_the_problem(
    served: tuple[Stack, str],
) -> None:
    stack, base = served
    with Session(stack.db) as s:
        contact = s.exec(select(Contact)).first()
    assert contact is not None
    key = tokens.secret(stack.settings)
    good = tokens.sign(key, contact_id=contact.id, org_id="demo", now=NOW)
    version, body, mac = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged = (
        base64.urlsafe_b64encode(json.dumps({**claims, "c": "someone-else"}).encode())
        .rstrip(b"=")
        .decode()
    )
    cases = {
        "not a token": ("hello", 400),
        "claims altered": (f"{version}.{forged}.{mac}", 403),
        "signature altered": (
            f"{version}.{body}.{mac[:-2]}{'AA' if mac[-2:] != 'AA' else 'BB'}",
            403,
        ),
        "another secret": (
            tokens.sign(b"not-our-secret", contact_id=contact.id, org_id="demo", now=NOW),
            403,
        ),
        "another organisation": (
            tokens.sign(key, contact_id=contact.id, org_id="other-org", now=NOW),
            404,
        ),
        "no such contact": (tokens.sign(key, contact_id="nobody", org_id="demo", now=NOW), 404),
    }
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get(f"/preferences/{good}")).status_code == 200
        for what, (token, status) in cases.items():
            for r in (
                await client.get(f"/preferences/{token}"),
                await client.post(f"/preferences/{token}/unsubscribe"),
            ):
                assert r.status_code == status, (what, r.status_code, r.text)
                assert "preferences link" in r.json()["detail"], what
        # The page's form needs its anti-forgery value.
        r = await client.post(f"/preferences/{good}", data={"csrf": "x", "email_opt_out": "true"})
        assert r.status_code == 403
    assert consent_rows(stack, contact.id) == []
    with Session(stack.db) as s:
        assert not s.get(Contact, contact.id).opted_out  # type: ignore[union-attr]


async def test_access_requests_are_listed_for_staff_who_see_the_account(
    served: tuple[Stack, str],
) -> None:
    stack, base = served
    seed_portfolio(stack.db, n=20, today=NOW.date(), org_id="globex", prefix="glx")
    with Session(stack.db) as s:
        contact = s.exec(select(Contact).join(Account).where(Account.org_id == "demo")).first()
        assert contact is not None
    owner = stack.owner(contact.account_id)
    other = next(c for c in ("alice", "bob", "chen", "dana", "emeka") if c != owner)
    token = tokens.sign(
        tokens.secret(stack.settings), contact_id=contact.id, org_id="demo", now=NOW
    )
    async with httpx.AsyncClient(base_url=base) as client:
        page = await client.get(f"/preferences/{token}")
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        r = await client.post(
            f"/preferences/{token}", data={"csrf": csrf, "access_request": "true"}
        )
        assert r.status_code == 303
        # The account's CSM and the org's admin see it; another CSM's book and another
        # tenant's admin do not.
        for user, expected in ((owner, 1), ("adam", 1), (other, 0), ("globex.adam", 0)):
            r = await client.get("/consent-records?kind=access", headers=stack.headers(user))
            assert r.status_code == 200
            rows = [x for x in r.json() if x["contact_id"] == contact.id]
            assert len(rows) == expected, user
        assert (await client.get("/consent-records")).status_code == 401
    assert consent_rows(stack, contact.id) == [("access", "request", "preferences_page")]
