"""A contact opens the preferences page from the link in an automated email (Debian's
Chromium, Playwright), opts out of automated decisions and asks for access to them; the
choices are recorded and the gate enforces them at once. Screenshot in
test-output/screenshots/preferences.png."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.conftest import Stack
from tests.preferences import automated_email, codes, consent_rows, gate_next, served_stack
from tests.web.test_inbox_browser import SHOTS, browser  # noqa: F401  (the Chromium fixture)


@pytest.fixture
async def served(
    stack_factory: Any, tmp_path: Path, database_url: str
) -> AsyncIterator[tuple[Stack, str]]:
    async with served_stack(stack_factory, tmp_path, database_url) as pair:
        yield pair


async def test_a_contact_opts_out_of_automated_decisions_on_the_page(
    served: tuple[Stack, str],
    browser: Browser,  # noqa: F811
) -> None:
    stack, _ = served
    sent = await automated_email(stack)
    contact = sent.contact(stack)
    offer = {
        "tool": "send_offer",
        "args": {
            "to": contact.email,
            "account_name": "Acme",
            "discount_pct": 5,
            "valid_days": 30,
            "term_months": 12,
        },
        "category": "commercial",
        "discount_pct": 5,
    }
    assert "consent.admt_opted_out" not in codes(await gate_next(stack, sent.record, **offer))

    page = await (await browser.new_context()).new_page()
    await page.goto(sent.preferences_url())
    await expect(page.locator("h1")).to_have_text("Your preferences")
    await expect(page.locator("form#preferences")).to_contain_text(contact.email)
    await page.check("input[name=admt_opt_out]")
    await page.check("input[name=access_request]")
    await page.click("button[type=submit]")
    await expect(page.locator("#saved")).to_be_visible()
    await expect(page.locator("input[name=admt_opt_out]")).to_be_checked()
    await expect(page.locator("input[name=email_opt_out]")).not_to_be_checked()
    await expect(page.locator("#requested")).to_contain_text("Access requested")
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "preferences.png"), full_page=True)

    assert consent_rows(stack, contact.id) == [
        ("admt", "opt_out", "preferences_page"),
        ("access", "request", "preferences_page"),
    ]
    refreshed = sent.contact(stack)
    assert refreshed.admt_opted_out and not refreshed.opted_out
    # An automated offer (a significant decision) about them is now denied; an ordinary
    # email still goes through the consent rules (they did not unsubscribe).
    decision = await gate_next(stack, sent.record, **offer)
    assert "consent.admt_opted_out" in codes(decision)
    assert "consent.admt_opted_out" in codes(
        await gate_next(stack, sent.record, snapshot=sent.snapshot, **offer)
    )
    assert not codes(await gate_next(stack, sent.record)) & {
        "consent.opted_out",
        "consent.admt_opted_out",
    }
    # Staff see the access request on the account.
    r = await stack.http.get("/consent-records?kind=access", headers=stack.headers("adam"))
    assert [x["contact_id"] for x in r.json()] == [contact.id]
