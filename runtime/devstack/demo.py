"""`autopilot demo`: a scripted scenario on the real components, through the HTTP API.

The five agents: Churn Rescue acts on its own and follows up after a wait (a demo day
lasts a second); an enterprise rescue is approved by people and ends when the champion
replies; the supervisor preempts a Renewal proposal for Churn Rescue on one account;
Adoption acts and is rolled back; Renewal writes a forecast; Expansion proposes and ends
on its goal; Compliance records the decisions of an account."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from typing import Any

import httpx
from sqlmodel import Session, col, select

from autopilot.runtime.agents.preview import preview
from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.demo_api import (
    DemoApi,
    Say,
    compliance_run,
    conflicts,
    conflicts_async,
    finished,
    outcomes,
    progress_waiting,
    seats_purchased,
    wait,
)
from autopilot.runtime.devstack.scenarios import pick_accounts
from autopilot.runtime.devstack.stack import free_port, port_open, running_stack
from autopilot.runtime.devstack.users import DEMO_PASSWORD
from autopilot.runtime.execution.rollback import rollback
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import ActionRecord
from autopilot.runtime.store.mail import ReceivedMail
from autopilot.runtime.store.tool_calls import ToolCallRecord


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


async def run_demo(base: Settings, say: Say) -> dict[str, Any]:
    settings = demo_settings(base).model_copy(update={"playbook_wait_scale": 1 / 86400})
    async with (
        running_stack(settings, ui=False) as stack,
        httpx.AsyncClient(base_url=stack.urls["api"]) as api,
    ):
        db = stack.services.db
        demo = DemoApi(stack, api, say)
        say(
            f"Seeded {stack.seeded} accounts; Temporal at {stack.urls['temporal']}, API at {stack.urls['api']}"
        )

        smb, smb_b = pick_accounts(db, "smb", n=2, max_arr=50_000)
        candidates = pick_accounts(
            db, "enterprise", n=6, min_arr=250_000, max_arr=1_000_000, strict=False
        )
        if len(candidates) < 2:
            raise RuntimeError("demo: fewer than two enterprise accounts awake now")
        # Scene 3 needs Expansion's proposal to reach a person (an email or a meeting, not
        # only a task for the owner): which it is depends on the account's room this
        # quarter, so ask the planner (a preview: nothing reserved, nothing sent).
        ent_b = candidates[0]
        for account_id in candidates:
            out = await asyncio.to_thread(
                preview, stack.settings, "expansion", account_id, "usage_snapshot"
            )
            if any(
                a["args"].get("to") and a["decision"]["outcome"] != "deny" for a in out["actions"]
            ):
                ent_b = account_id
                break
        ent_a = next(a for a in candidates if a != ent_b)
        day = stack.settings.playbook_wait_scale * 86400

        say(
            f"1. {smb} (SMB) loses health: Churn Rescue's email is allowed and sent on its own;"
            f" five days later (a day lasts {day:g} s in the demo) nobody replied: the follow-up"
            " asks the optimizer for the cheapest human help"
        )
        wf = await demo.signal(smb)
        rescue = await demo.approving(smb, wf)
        say(f"  {wf}: {outcomes(rescue)}")

        say(
            f"2. {ent_a} (enterprise, ARR ≥ 250k): the email needs its CSM; the offer the optimizer"
            " chose needs the CSM and a manager; the champion replies, so no follow-up"
        )
        wf_a = await demo.signal(ent_a)
        await demo.decide(ent_a, "approve", demo.owner(ent_a))
        await demo.decide(ent_a, "approve", demo.owner(ent_a))
        await demo.decide(ent_a, "approve", "maria")
        await demo.post({"account_id": ent_a, "type": "email_reply"})
        say(f"  {wf_a}: {outcomes(await finished(stack.client, wf_a))}")

        say(
            f"3. {ent_b} (enterprise): the Expansion agent's proposal to the decision-maker waits"
            " in the inbox when the account turns; the CSM rejects Churn Rescue's email, and its"
            " offer (higher priority) goes to the same person: the supervisor preempts the proposal"
        )
        seats = seats_purchased(db, ent_b)
        (lower_wf,) = await demo.post(
            {
                "account_id": ent_b,
                "type": "usage_snapshot",
                "active_users": seats,
                "seats_used": seats,
            }
        )
        first = (await wait(lambda: demo.pending_for(ent_b), "the expansion proposal"))[0]
        say(
            f"  expansion asks for {first['action']['option']} to {first['action']['args'].get('to')}"
        )
        wf_b = await demo.signal(ent_b)
        await demo.decide(
            ent_b,
            "reject",
            demo.owner(ent_b),
            reason="the customer is mid-escalation; I will call them",
            agent="churn_rescue",
        )
        await wait(lambda: conflicts_async(db, ent_b), f"the supervisor to settle {ent_b}")
        for c in conflicts(db, ent_b):
            say(f"  supervisor: {c.reason} ({c.kind} {c.recipient}) → {c.other_agent} {c.outcome}")
        await wait(lambda: demo.pending_for(ent_b), f"the offer for {ent_b} to be pending")
        renewal_wf = lower_wf

        say(
            f"4. {smb_b} (SMB): most seats idle when a module is used: the Adoption agent takes the"
            " cheapest path to 60 % active seats and writes the status to the CRM; then the run is"
            " rolled back"
        )
        await demo.post({"account_id": smb_b, "type": "usage_snapshot", "active_users": 1})
        (adoption_wf,) = await demo.post(
            {"account_id": smb_b, "type": "feature_use", "module": "reports"}
        )
        handle = stack.client.get_workflow_handle(adoption_wf)
        await wait(lambda: progress_waiting(handle), f"{adoption_wf} to finish its first stretch")
        await handle.terminate("demo: rolled back before its follow-up")
        undone = await rollback(stack.services, adoption_wf, actor="maria")
        for step in undone["steps"]:
            say(f"  rollback: {step['tool']} → {step['status']} ({step.get('compensate')})")

        with Session(db) as s:
            # Below the ARR that needs a CSM's approval for any action: it acts on its own.
            renewing = s.exec(
                select(Account)
                .where(
                    col(Account.renewal_date)
                    <= stack.services.clock().date() + timedelta(days=120),
                    col(Account.arr) < 250_000,
                    col(Account.id).not_in([smb, smb_b, ent_a, ent_b]),
                )
                .order_by(col(Account.renewal_date))
            ).first()
            full = s.exec(
                select(Account).where(
                    col(Account.arr) < 250_000,
                    col(Account.id).not_in([smb, smb_b, ent_a, ent_b]),
                    col(Account.segment) == "mid_market",
                )
            ).first()
        assert renewing is not None and full is not None
        say(
            f"5. {renewing.id} renews on {renewing.renewal_date}: an invoice starts the Renewal agent,"
            " which writes the renewal forecast (Health 2.0's churn risk) back to the CRM"
        )
        (renew_wf,) = await demo.post(
            {"account_id": renewing.id, "type": "invoice", "amount": 1200.0}
        )
        renewal = await finished(stack.client, renew_wf)
        say(f"  {renew_wf}: {outcomes(renewal)}")
        async with httpx.AsyncClient() as crm:
            forecast = (await crm.get(f"{stack.settings.crm_url}/accounts/{renewing.id}")).json()[
                "forecast"
            ]
        say(f"  CRM forecast for {renewing.id}: {forecast}")

        say(
            f"6. {full.id} uses every seat: the Expansion agent proposes more seats and records the"
            " opportunity; the customer expands, so the run ends on its goal"
        )
        (exp_wf,) = await demo.post(
            {
                "account_id": full.id,
                "type": "usage_snapshot",
                "active_users": full.seats_purchased,
                "seats_used": full.seats_purchased,
            }
        )
        await demo.approving(full.id, exp_wf, until_waiting=True)
        await demo.post({"account_id": full.id, "type": "expanded", "amount": 12000.0, "seats": 10})
        expansion = await finished(stack.client, exp_wf)
        say(f"  {exp_wf}: {outcomes(expansion)}; exit: {expansion.exit}")

        say(
            f"7. The daily Compliance sweep on {ent_a}: decisions recorded, opted-out contacts"
            " blocked, the model card refreshed"
        )
        (comp_wf,) = await compliance_run(stack, ent_a)
        compliance = await demo.approving(ent_a, comp_wf)
        say(f"  {comp_wf}: {outcomes(compliance)}")

        decided = [a["status"] for a in await demo.approvals(status="")]
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
            "follow_up": [o.status for o in rescue.outcomes if o.step == "human_help"],
            "conflicts": [
                {
                    "kind": c.kind,
                    "winner": c.winner_agent,
                    "other": c.other_agent,
                    "outcome": c.outcome,
                }
                for c in conflicts(db, ent_b)
            ],
            "expansion_exit": expansion.exit,
            "compliance": [o.status for o in compliance.outcomes],
            "workflows": sorted(
                {wf, wf_a, wf_b, renewal_wf, adoption_wf, renew_wf, exp_wf, comp_wf}
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
