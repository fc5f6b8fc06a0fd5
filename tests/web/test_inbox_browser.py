"""A CSM works the web inbox in Debian's Chromium (Playwright): sign in, approve,
edit, reject, bulk-approve; then a manager opens the manager view. Screenshots go
to test-output/screenshots/."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from sqlmodel import Session
from playwright.async_api import Browser, Page, async_playwright, expect

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.api.app import create_app
from autopilot.runtime.store.accounts import Account
from tests.conftest import REPO, Stack, free_port, wait_for

SHOTS = Path(os.environ.get("AUTOPILOT_TEST_OUTPUT", REPO / "test-output")) / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# As this machine's closed network needs: no background connections, no sandbox as root.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert Path(CHROMIUM).exists(), f"Chromium not found at {CHROMIUM}: `./dev test` installs Debian's chromium"
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        await b.close()


@pytest.fixture
async def stack(stack_factory) -> AsyncIterator[Stack]:  # type: ignore[no-untyped-def]
    async with stack_factory(accounts=400) as s:
        yield s


@pytest.fixture
async def served(stack: Stack) -> AsyncIterator[str]:
    """The same app on a real loopback port, for the browser."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(stack.services, stack.ingest), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: server.started, what="uvicorn")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def sign_in(browser: Browser, base: str, email: str) -> Page:
    page = await (await browser.new_context(viewport={"width": 1400, "height": 900})).new_page()
    await page.goto(f"{base}/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", "demo")
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/inbox")
    return page


def row(page: Page, account: str):  # type: ignore[no-untyped-def]
    return page.locator("#items tbody tr", has_text=account)


async def open_item(page: Page, account: str) -> None:
    await row(page, account).click()
    await expect(page.locator("#panel .detail h2")).to_contain_text(account)


async def test_csm_works_the_inbox_in_chromium(stack: Stack, served: str, browser: Browser) -> None:
    # Five enterprise accounts in one CSM's book, each with an email waiting for the CSM.
    accounts = stack.pick("enterprise", n=5, min_arr=250_000, max_arr=1_000_000)
    csm = "dana"
    with Session(stack.db) as s:
        for a in accounts:
            s.get(Account, a).owner_csm = csm  # type: ignore[union-attr]
        s.commit()
    for a in accounts:
        await stack.post_events(drop_events(stack.db, a))
        await stack.pending_for(a)
    approve_a, edit_a, reject_a, bulk_a, bulk_b = accounts
    email_to = {a: (await stack.pending_for(a))[0]["action"]["args"]["to"] for a in accounts}

    # A wrong password is refused on the page.
    page = await (await browser.new_context()).new_page()
    await page.goto(f"{served}/login")
    await page.fill("input[name=email]", f"{csm}@demo.example")
    await page.fill("input[name=password]", "nope")
    await page.click("button[type=submit]")
    await expect(page.get_by_role("alert")).to_contain_text("Wrong email or password")

    page = await sign_in(browser, served, f"{csm}@demo.example")
    for a in accounts:
        await expect(row(page, a)).to_have_count(1)

    # Approve with the keyboard: j moves to the first item, a approves it.
    await page.keyboard.press("j")
    await expect(page.locator("#panel .detail h2")).to_contain_text(approve_a)
    await expect(page.locator("#panel .preview")).to_contain_text("Subject:")  # the dry-run preview
    await expect(page.locator("#panel .factors")).to_contain_text("baseline")  # the explanation
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / "inbox.png"), full_page=True)
    await page.keyboard.press("a")
    await expect(page.locator("#result")).to_contain_text("approved")
    await wait_for(lambda: any(m.rcpt_to == email_to[approve_a] for m in stack.mails()), what="the approved email")

    # Edit: the new subject goes through the gate again and comes back as a new item.
    await page.reload()
    await open_item(page, edit_a)
    await page.fill("#edit-form input[name=subject]", "A quick check-in from your CSM")
    await page.click("#save-edit")
    await expect(page.locator("#result")).to_contain_text("gated again")
    await page.wait_for_load_state("load")
    await wait_for(lambda: any(r.account_id == edit_a and r.edited_from for r in stack.approval_rows("pending")),
                   what="the edited item")
    await page.reload()
    await open_item(page, edit_a)
    await expect(page.locator("#edit-form input[name=subject]")).to_have_value("A quick check-in from your CSM")
    await page.click("#approve")
    await expect(page.locator("#result")).to_contain_text("approved")
    sent = await wait_for(lambda: [m for m in stack.mails() if m.rcpt_to == email_to[edit_a]], what="the edited email")
    assert sent[0].subject == "A quick check-in from your CSM"

    # Reject: the reason is asked for, and it is stored with the decision.
    await page.reload()
    await open_item(page, reject_a)
    await page.keyboard.press("r")
    await page.fill("#reason", "they are mid-migration, I will call them")
    await page.click("#reason-ok")
    await expect(page.locator("#result")).to_contain_text("rejected")

    # Bulk-approve two items picked with checkboxes.
    await page.reload()
    for a in (bulk_a, bulk_b):
        await row(page, a).locator("input.pick").check()
    await page.click("#bulk-approve")
    await expect(row(page, bulk_b).locator("td").last).to_have_text("approved", timeout=15_000)
    await expect(row(page, bulk_a).locator("td").last).to_have_text("approved")
    await wait_for(lambda: {email_to[bulk_a], email_to[bulk_b]} <= {m.rcpt_to for m in stack.mails()},
                   what="the bulk-approved emails")

    rows = {r.id: r for r in stack.approval_rows()}
    emails = {r.account_id: r for r in rows.values() if r.tool == "send_email" and r.status != "superseded"}
    assert {a: emails[a].status for a in accounts} == {approve_a: "approved", edit_a: "approved",
                                                      reject_a: "rejected", bulk_a: "approved", bulk_b: "approved"}
    assert emails[reject_a].decision_reason == "they are mid-migration, I will call them"
    assert all(emails[a].decided_by == csm for a in accounts)
    assert sum(m.rcpt_to == email_to[reject_a] for m in stack.mails()) == 0

    # The manager view: pending by age and role, autonomy, spend, CbR, per agent, charts.
    manager = await sign_in(browser, served, "maria@demo.example")
    await manager.goto(f"{served}/manager")
    await expect(manager.locator("svg").first).to_be_visible()
    text = await manager.inner_text("body")
    for heading in ("autonomy", "budget", "CbR", "agent"):
        assert heading.lower() in text.lower(), heading
    await manager.screenshot(path=str(SHOTS / "manager.png"), full_page=True)
    assert (SHOTS / "inbox.png").stat().st_size > 10_000 and (SHOTS / "manager.png").stat().st_size > 10_000
