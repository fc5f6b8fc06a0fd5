"""One health: for one account at one moment, the trigger's input, the inbox list, the
inbox panel, the API and the CLI show the same Health 2.0 figure."""

from __future__ import annotations

import json

from sqlmodel import Session

from autopilot.runtime.accounts.snapshot import get_snapshot
from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.store.customer import AccountScore
from tests.conftest import Stack
from tests.runtime.test_cli import arun_cli, stack_env


async def test_every_surface_shows_the_same_health(stack: Stack) -> None:
    (account,) = stack.pick("enterprise", min_arr=250_000, max_arr=1_000_000)
    await stack.post_events(drop_events(stack.db, account))
    (item,) = await stack.pending_for(account)  # the rescue email waits for the CSM
    owner = stack.owner(account)

    with Session(stack.db) as s:
        stored = s.get(AccountScore, account)
        snapshot = get_snapshot(s, account_id=account, today=stack.services.clock().date())
    assert stored is not None and snapshot is not None
    health, risk = stored.health, stored.risk
    # The trigger's input: what `account.health` and `account.churn_risk` are in CEL.
    cel_account = snapshot.as_cel(stack.services.clock().date())
    assert (cel_account["health"], cel_account["churn_risk"]) == (health, risk)
    assert health < 50  # and the trigger that fired is Churn Rescue's `account.health < 50.0`

    # The inbox list: the item's risk, and the action's reason, which quotes the health.
    assert item["risk"] == risk
    assert item["action"]["reason"].startswith(f"health {health:.1f}:")

    # From here on, the stored score is replaced by a marked one: a surface that computed
    # Health 2.0 by itself (even correctly, as of today) would not show it.
    with Session(stack.db) as s:
        row = s.get(AccountScore, account)
        assert row is not None
        # Same factors, another baseline: the explanation still adds up to the marked score.
        row.health, row.risk = 42.42, 0.6061
        row.baseline = round(42.42 - sum(f["contribution"] for f in row.factors), 6)
        s.add(row)
        s.commit()
        marked = get_snapshot(s, account_id=account, today=stack.services.clock().date())
    assert marked is not None and (marked.health, marked.churn_risk) == (42.42, 0.6061)

    listed = (await stack.http.get("/approvals", headers=stack.headers(owner))).json()
    assert (
        next(a for a in listed if a["id"] == item["id"])["risk"] == 0.6061
    )  # the list: the risk now
    panel = (await stack.http.get(f"/approvals/{item['id']}", headers=stack.headers(owner))).json()
    assert (panel["health"]["health"], panel["health"]["risk"]) == (42.42, 0.6061)
    api = (await stack.http.get(f"/accounts/{account}", headers=stack.headers(owner))).json()
    assert (api["health"]["health"], api["health"]["risk"]) == (42.42, 0.6061)
    proc = await arun_cli("accounts", "show", account, "--json", env=stack_env(stack))
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(proc.stdout)
    assert (cli["health"]["health"], cli["health"]["risk"]) == (42.42, 0.6061)
