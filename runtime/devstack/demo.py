"""`autopilot demo`: a scripted scenario on the real components, through the HTTP API.

Four at-risk accounts: one email is executed on its own, one account's actions are
approved and executed, one offer is denied by policy (discount above the segment
cap), one email is rejected by its CSM and that account's offer is left pending."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlmodel import Session, col, select

from autopilot.runtime.auth.users import issue_token
from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.scenarios import drop_events, pick_accounts
from autopilot.runtime.devstack.stack import free_port, port_open, running_stack
from autopilot.runtime.devstack.users import DEMO_PASSWORD
from autopilot.runtime.execution.rollback import rollback
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.mail import ReceivedMail
from autopilot.runtime.store.tool_calls import ToolCallRecord

Say = Callable[[str], None]


def demo_settings(base: Settings) -> Settings:
    """A fresh demo data directory. A port set in the environment (AUTOPILOT_API_PORT,
    AUTOPILOT_TEMPORAL_PORT, AUTOPILOT_SMTP_PORT, ...) is used as given: it may be the one
    a firewall or a container publishes. An unset port is a free one, so that the demo
    runs beside an `autopilot up` that holds the defaults."""
    configured = (
        base.model_fields_set
    )  # what came from the environment (or the caller), not defaults

    def port(name: str) -> int:
        if name not in configured:
            return free_port()
        value: int = getattr(base, name)
        if port_open(value):  # fail with the setting's name, not a bind error deep in a server
            raise RuntimeError(f"port {value} (AUTOPILOT_{name.upper()}) is in use")
        return value

    # Its own task queue, so a running `autopilot up` worker never picks up demo runs.
    update: dict[str, Any] = {
        "data_dir": base.data_dir / "demo",
        "api_port": port("api_port"),
        "task_queue": "autopilot-demo",
    }
    if not base.temporal_address and port_open(base.temporal_port):
        # `autopilot up` is running: use its server, so the runs show in its UI.
        update["temporal_address"] = base.temporal_target
    elif not base.temporal_address:
        update["temporal_port"] = port("temporal_port")  # headless: the UI port is never bound
    if not base.smtp_host:
        update["smtp_port"] = port("smtp_port")
    shutil.rmtree(update["data_dir"], ignore_errors=True)
    return base.model_copy(update=update)


async def _wait(predicate: Callable[[], Awaitable[Any]], what: str, timeout: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := await predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"demo: timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


async def _finished(client: Any, workflow_id: str, timeout: float = 120) -> Any:
    """A run's result; a run still waiting after `timeout` (on an approval, say) is an error, not a hang."""
    try:
        return await asyncio.wait_for(client.get_workflow_handle(workflow_id).result(), timeout)
    except TimeoutError:
        raise TimeoutError(f"demo: {workflow_id} did not finish within {timeout:g} s") from None


async def run_demo(base: Settings, say: Say) -> dict[str, Any]:
    settings = demo_settings(base)
    async with (
        running_stack(settings, ui=False) as stack,
        httpx.AsyncClient(base_url=stack.urls["api"]) as api,
    ):
        db = stack.services.db
        say(
            f"Seeded {stack.seeded} accounts; Temporal at {stack.urls['temporal']}, API at {stack.urls['api']}"
        )
        tokens: dict[str, str] = {}

        def as_user(user: str) -> dict[str, str]:
            if user not in tokens:
                tokens[user] = issue_token(db, user_id=user, label="demo")
            return {"Authorization": f"Bearer {tokens[user]}"}

        def owner(account: str) -> str:
            with Session(db) as s:
                row = s.get(Account, account)
                assert row is not None
                return row.owner_csm

        async def approvals(status: str = "pending") -> list[dict[str, Any]]:
            r = await api.get("/approvals", params={"status": status}, headers=as_user("maria"))
            r.raise_for_status()
            return r.json()  # type: ignore[no-any-return]

        async def pending_for(account: str) -> list[dict[str, Any]]:
            return [a for a in await approvals() if a["account_id"] == account]

        async def signal(account: str, severe: bool = False) -> str:
            started: list[str] = []
            for ev in drop_events(db, account, severe=severe):
                r = await api.post("/events", json=ev, headers=as_user("adam"))
                r.raise_for_status()
                started += r.json()["started"]
                say(
                    f"  event {ev['type']:<15} → {account}  {('starts ' + ', '.join(r.json()['started'])) if r.json()['started'] else ''}"
                )
            assert len(started) == 1, started
            return started[0]

        async def decide(account: str, verdict: str, user: str, reason: str = "") -> dict[str, Any]:
            item = (await _wait(lambda: pending_for(account), f"an approval for {account}"))[0]
            body = {"verdict": verdict, "payload_hash": item["payload_hash"], "reason": reason}
            r = await api.post(
                f"/approvals/{item['id']}/decision", json=body, headers=as_user(user)
            )
            r.raise_for_status()
            out = r.json()
            left = (
                f", still needs {', '.join(out['remaining_roles'])}"
                if out["status"] == "pending"
                else ""
            )
            say(
                f"  {user} {verdict}s {item['action']['tool']} on {account} → {out['status']}{left} "
                f"({'; '.join(item['reasons'])})"
            )
            return item

        smb, smb_b = pick_accounts(db, "smb", n=2, max_arr=50_000)
        (mid,) = pick_accounts(db, "mid_market", min_arr=50_000, severe=True)
        ent_a, ent_b = pick_accounts(db, "enterprise", n=2, min_arr=250_000, max_arr=1_000_000)

        say(f"1. {smb} (SMB) loses health: the rescue email is allowed and sent on its own")
        wf = await signal(smb)
        await _finished(stack.client, wf)

        say(
            f"2. {ent_a} (enterprise, ARR ≥ 250k): the email needs its CSM; the 10% offer needs the CSM"
            " and a manager"
        )
        wf = await signal(ent_a)
        await decide(ent_a, "approve", owner(ent_a))
        await decide(ent_a, "approve", owner(ent_a))
        await decide(ent_a, "approve", "maria")
        await _finished(stack.client, wf)

        say(f"3. {mid} (mid-market, severe): email sent; a 25% offer is denied (cap 15%)")
        wf = await signal(mid, severe=True)
        await _finished(stack.client, wf)

        say(f"4. {ent_b} (enterprise): the CSM rejects the email; the offer waits in the inbox")
        await signal(ent_b)
        await decide(
            ent_b, "reject", owner(ent_b), reason="customer is mid-escalation; I will call them"
        )
        await _wait(lambda: pending_for(ent_b), f"the offer for {ent_b} to be pending")

        say(
            f"5. {smb_b} (SMB): most seats idle when a module is used: the Adoption agent schedules an"
            " in-app guide, creates a CSM task and writes the status to the CRM; then the run is rolled back"
        )
        for ev in (
            {"account_id": smb_b, "type": "usage_snapshot", "active_users": 1},
            {"account_id": smb_b, "type": "feature_use", "module": "reports"},
        ):
            r = await api.post("/events", json=ev, headers=as_user("adam"))
            r.raise_for_status()
        adoption_wf = f"agent:adoption:{smb_b}"
        await _finished(stack.client, adoption_wf)
        undone = await rollback(stack.services, adoption_wf, actor="maria")
        for step in undone["steps"]:
            say(f"  rollback: {step['tool']} → {step['status']} ({step.get('compensate')})")

        with Session(db) as s:
            # Below the ARR that needs a CSM's approval for any action: the forecast is written on its own.
            renewing = s.exec(
                select(Account)
                .where(
                    col(Account.renewal_date)
                    <= stack.services.clock().date() + timedelta(days=120),
                    col(Account.arr) < 250_000,
                )
                .order_by(col(Account.renewal_date))
            ).first()
        assert renewing is not None
        say(
            f"6. {renewing.id} renews on {renewing.renewal_date}: an invoice starts the Renewal agent, which writes"
            " the renewal forecast (from the health model's churn risk) back to the CRM"
        )
        r = await api.post(
            "/events",
            json={"account_id": renewing.id, "type": "invoice", "amount": 1200.0},
            headers=as_user("adam"),
        )
        r.raise_for_status()
        await _finished(stack.client, f"agent:renewal:{renewing.id}")
        async with httpx.AsyncClient() as crm:
            forecast = (await crm.get(f"{stack.settings.crm_url}/accounts/{renewing.id}")).json()[
                "forecast"
            ]
        say(f"  CRM forecast for {renewing.id}: {forecast}")

        decided = [a["status"] for a in await approvals(status="")]
        with Session(db) as s:
            statuses = [r.status for r in s.exec(select(ActionRecord))]
            delivered = (
                len(s.exec(select(ReceivedMail)).all())
                if not settings.smtp_host
                else len(
                    s.exec(select(ToolCallRecord).where(col(ToolCallRecord.status) == "done")).all()
                )
            )
        summary = {
            "executed": statuses.count("executed"),
            "approved": decided.count("approved"),
            "rejected": decided.count("rejected"),
            "denied": statuses.count("denied"),
            "pending": decided.count("pending"),
            "failed": statuses.count("failed"),
            "emails_delivered": delivered,
            "rolled_back": undone["undone"],
            "crm_forecast": forecast,
            "accounts": stack.seeded,
            "workflows": sorted(
                {f"agent:churn_rescue:{a}" for a in (smb, ent_a, mid, ent_b)} | {adoption_wf}
            ),
            "inbox": f"sign in at /inbox as maria@demo.example (password {DEMO_PASSWORD})",
            "data_dir": str(settings.data_dir),
        }
        say(
            "Summary: "
            + ", ".join(
                f"{k} {summary[k]}"
                for k in (
                    "executed",
                    "approved",
                    "rejected",
                    "denied",
                    "pending",
                    "emails_delivered",
                    "rolled_back",
                )
            )
        )
        return summary
