"""The Compliance agent's tools through the real path: the registry and the exactly-once
executor over real SQLite, the real policy bundle (regopy) for the gate, and a real SMTP
server on loopback for the pre-use notice."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.account import AccountSnapshot, ContactInfo
from autopilot.runtime.contracts.action import ProposedAction
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.contracts.policy import ActorIn
from autopilot.runtime.contracts.tool import ToolCall, ToolResult
from autopilot.runtime.devstack.smtp_sink import start_smtp_sink
from autopilot.runtime.execution.executor import execute_once
from autopilot.runtime.health.model import default_model_dir
from autopilot.runtime.policy.gate import Reservation, gate_action
from autopilot.runtime.policy.rego import RegoEngine
from autopilot.runtime.services import Services, build_services
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.runtime.store.actions import ActionRecord, PolicyDecisionRecord
from autopilot.runtime.store.approvals import Approval, ApprovalVote
from autopilot.runtime.store.compliance import (
    AdmtDecision,
    AdmtNotice,
    ComplianceGap,
    ModelCardRecord,
    OptOutSeen,
)
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.mail import ReceivedMail
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.tools.builtin import registry
from autopilot.tools.compliance import ContactOptedOut
from autopilot.tools.registry import SmtpConfig
from tests.conftest import REPO, free_port

NOW = datetime.combine(date.today(), time(14, 0), UTC)  # business hours for every contact
ACCOUNT = "acc-cmp"
COMPLIANCE_TOOLS = [
    "compliance_record_decisions",
    "send_admt_notice",
    "suppress_opted_out",
    "refresh_model_card",
]
NOTICED = NOW - timedelta(days=200)


@dataclass
class World:
    svc: Services
    smtp: SmtpConfig

    def call(self, tool: str, args: dict[str, Any], key: str, **kw: Any) -> ToolResult:
        call = ToolCall(tool=tool, args=args, idempotency_key=key, granted=[tool], **kw)
        return execute_once(self.svc.db, registry, call, self.smtp, self.svc.settings)

    def rows(self, model: Any, *where: Any) -> list[Any]:
        with Session(self.svc.db) as s:
            return list(s.exec(select(model).where(*where)))

    def snapshot(self, account_id: str = ACCOUNT) -> AccountSnapshot:
        with Session(self.svc.db) as s:
            a = s.get(Account, account_id)
            assert a is not None
            contacts = s.exec(select(Contact).where(Contact.account_id == account_id)).all()
            return AccountSnapshot(
                **a.model_dump(exclude={"org_id", "churned_at", "custom"}),
                health=40.0,
                churn_risk=0.6,
                contacts=[
                    ContactInfo(**c.model_dump(exclude={"account_id", "seniority", "region"}))
                    for c in contacts
                ],
            )

    async def gate(
        self,
        key: str,
        action: ProposedAction,
        spec: AgentSpec,
        account_id: str = ACCOUNT,
        *,
        reserve: bool = True,
    ) -> str:
        decision = await gate_action(
            self.svc,
            run_key=key,
            action=action,
            account=self.snapshot(account_id),
            spec=spec,
            actor=ActorIn(type="agent", id=spec.name),
            pinned_bundle=self.svc.policy.bundle_hash,
            reserve=Reservation(key=key, workflow_id=f"wf/{key}", agent=spec.name)
            if reserve
            else None,
        )
        return decision.outcome

    def set_status(self, key: str, status: str) -> None:
        """As the graph's record node does once the action has run."""
        with transaction(self.svc.db) as s:
            row = s.get(ActionRecord, key)
            assert row is not None
            row.status, row.updated_at = status, datetime.now(UTC)
            s.add(row)

    def approve(self, key: str, actor: str = "demo:dana") -> None:
        """The inbox item of an action and a person's vote on it, as the workflow writes them."""
        with transaction(self.svc.db) as s:
            row = s.get(ActionRecord, key)
            assert row is not None
            s.add(
                Approval(
                    id=f"apr-{key}",
                    workflow_id=row.workflow_id,
                    run_key=key,
                    agent=row.agent,
                    account_id=row.account_id,
                    action=row.payload,
                    payload_hash=row.payload_hash,
                    roles=["csm"],
                    reasons=[],
                    status="approved",
                    created_at=NOW,
                    due_at=NOW + timedelta(hours=24),
                    decided_by=actor,
                    decided_at=NOW,
                )
            )
            s.add(
                ApprovalVote(
                    approval_id=f"apr-{key}", role="csm", verdict="approve", actor=actor, at=NOW
                )
            )


def _contact(cid: str, role: str, *, notice: bool, opted_out: bool = False) -> Contact:
    return Contact(
        id=cid,
        account_id=ACCOUNT,
        name=role.title(),
        email=f"{role}@cmp.example",
        role=role,
        opted_out=opted_out,
        notice_at=NOTICED if notice else None,
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    svc = build_services(Settings(data_dir=tmp_path), clock=lambda: NOW)
    with transaction(svc.db) as s:
        s.add(
            Account(
                id=ACCOUNT,
                name="Compliance Co",
                segment="smb",
                region="eu",
                arr=20_000,
                annual_cost_to_serve=4_000,
                seats_purchased=10,
                seats_used=8,
                active_users_30d=7,
                logins_30d=90,
                renewal_date=NOW.date() + timedelta(days=60),
                owner_csm="demo:dana",
            )
        )
        s.add(_contact("c1", "champion", notice=True))
        s.add(_contact("c2", "admin", notice=False))
        s.add(_contact("c3", "executive_sponsor", notice=True, opted_out=True))
        s.add(_contact("c4", "end_user", notice=True))
    port = free_port()
    sink = start_smtp_sink(svc.db, port=port)
    yield World(svc, SmtpConfig(host="127.0.0.1", port=port, mail_from="cs@vendor.example"))
    sink.stop()
    svc.db.dispose()


def _offer(to: str, pct: float = 5) -> ProposedAction:
    return ProposedAction(
        tool="send_offer",
        args={"to": to, "account_name": "Compliance Co", "discount_pct": pct, "valid_days": 30},
        reason="renewal probability 62 % is below 80 %",
        expected_cost=100.0,
        expected_uplift=0.1,
        discount_pct=pct,
        category="commercial",
    )


def _email(to: str) -> ProposedAction:
    return ProposedAction(
        tool="send_email",
        args={"to": to, "subject": "Checking in", "body": "Hello"},
        reason="login drop",
        expected_cost=0.5,
        expected_uplift=0.05,
    )


def _insert(world: World, key: str, agent: str, action: ProposedAction, status: str) -> None:
    """An action row the gate did not write (its decision was never logged)."""
    with transaction(world.svc.db) as s:
        row = ActionRecord(
            run_key=key,
            workflow_id=f"wf/{key}",
            agent=agent,
            account_id=ACCOUNT,
            segment="smb",
            tool=action.tool,
            payload={},
            payload_hash="",
            status=status,
            created_at=NOW,
            updated_at=NOW,
        )
        row.take(action)
        s.add(row)


# --- the policy lets the Compliance agent's tools run ----------------------------------


@pytest.mark.parametrize("segment", ["enterprise", "mid_market", "smb", "tech_touch"])
async def test_compliance_tools_pass_the_gate_without_approval_in_every_segment(
    world: World, segment: str
) -> None:
    with transaction(world.svc.db) as s:
        s.add(
            Account(
                id=f"acc-{segment}",
                name=segment,
                segment=segment,
                region="us",
                arr=100_000,  # below the CSM-review threshold, which applies to every action
                seats_purchased=10,
                seats_used=8,
                active_users_30d=7,
                logins_30d=90,
                renewal_date=NOW.date() + timedelta(days=60),
                owner_csm="demo:dana",
            )
        )
        s.add(
            Contact(
                id=f"n-{segment}",
                account_id=f"acc-{segment}",
                name="N",
                email=f"n@{segment}.example",
                role="admin",
            )
        )
    spec = world.svc.specs["renewal"].model_copy(
        update={"name": "compliance", "tools": COMPLIANCE_TOOLS}
    )
    args = {
        "compliance_record_decisions": {"account_id": f"acc-{segment}"},
        "send_admt_notice": {"account_id": f"acc-{segment}", "contact_id": f"n-{segment}"},
        "suppress_opted_out": {"account_id": f"acc-{segment}"},
        "refresh_model_card": {},
    }
    outcomes = {}
    for name in COMPLIANCE_TOOLS:
        action = ProposedAction(
            tool=name,
            args=args[name],
            reason="daily compliance",
            expected_cost=registry.get(name).cost,
            expected_uplift=0.0,
            category="compliance",
        )
        outcomes[name] = await world.gate(f"{segment}/{name}", action, spec, f"acc-{segment}")
    assert outcomes == dict.fromkeys(COMPLIANCE_TOOLS, "allow")


# --- decision records ---------------------------------------------------------------


async def test_decisions_are_recorded_once_with_gate_notice_and_reviewer(world: World) -> None:
    renewal = world.svc.specs["renewal"]
    # Gated for real: significant, so a person must review; c2 has no notice: denied.
    assert await world.gate("k1", _offer("champion@cmp.example"), renewal) == "require_approval"
    assert await world.gate("k2", _offer("admin@cmp.example"), renewal) == "deny"
    # A later evaluation under k1's key of another payload (8 %): not what k1 holds.
    assert await world.gate("k1", _offer("champion@cmp.example", 8), renewal, reserve=False) != ""
    world.approve("k1")
    sent = world.call("send_offer", _offer("champion@cmp.example").args, "k1")
    assert sent.output["delivered"]
    world.set_status("k1", "executed")
    # Awaiting approval still, at the first daily run.
    assert await world.gate("k4", _offer("end_user@cmp.example", 4), renewal) == "require_approval"
    # An offer that ran with no decision logged, to a contact with no notice, unreviewed.
    _insert(world, "k3", "renewal", _offer("admin@cmp.example"), "executed")

    dry = world.call("compliance_record_decisions", {"account_id": ACCOUNT}, "day0", dry_run=True)
    assert dry.status == "dry_run" and dry.output["recorded"] == 3
    assert world.rows(AdmtDecision) == [] and world.rows(ComplianceGap) == []

    first = world.call("compliance_record_decisions", {"account_id": ACCOUNT}, "day1").output
    gaps = {(g["code"], g["subject"]) for g in first["gaps"]}
    assert gaps == {
        ("compliance.no_gate_decision", "k3"),
        ("compliance.no_notice", "k3"),
        ("compliance.no_human_review", "k3"),
    }
    assert {
        k: first[k] for k in ("recorded", "updated", "on_record", "gaps_found", "open_gaps")
    } == {
        "recorded": 3,
        "updated": 0,
        "on_record": 3,
        "gaps_found": 3,
        "open_gaps": 3,
    }
    assert first["opted_out_contacts"] == 1
    json.dumps(first)  # JSON-able as it is

    logged = sorted(
        world.rows(PolicyDecisionRecord, PolicyDecisionRecord.run_key == "k1"), key=lambda r: r.id
    )
    assert len(logged) == 2  # the decision on the 5 % offer k1 holds is the first
    k1 = world.rows(AdmtDecision, AdmtDecision.run_key == "k1")[0]
    assert (k1.agent, k1.tool, k1.contact_id, k1.outcome) == (
        "renewal",
        "send_offer",
        "c1",
        "executed",
    )
    assert (k1.policy_decision_id, k1.input_hash, k1.bundle_hash) == (
        logged[0].id,
        logged[0].input_hash,
        world.svc.policy.bundle_hash,
    )
    assert k1.gate_outcome == "require_approval" and k1.notice_on_record and k1.human_involved
    assert k1.reviewers == [{"actor": "demo:dana", "role": "csm", "verdict": "approve"}]
    assert k1.discount_pct == 5 and k1.executed_at is not None
    k3 = world.rows(AdmtDecision, AdmtDecision.run_key == "k3")[0]
    assert (k3.policy_decision_id, k3.notice_on_record, k3.human_involved) == (None, False, False)
    k4 = world.rows(AdmtDecision, AdmtDecision.run_key == "k4")[0]
    assert (k4.outcome, k4.human_involved, k4.executed_at) == ("pending", False, None)

    # A retry replays; the next day finds everything on record and adds nothing.
    again = world.call("compliance_record_decisions", {"account_id": ACCOUNT}, "day1")
    assert again.replayed and again.output == first
    second = world.call("compliance_record_decisions", {"account_id": ACCOUNT}, "day2").output
    assert (second["recorded"], second["updated"], second["gaps"], second["on_record"]) == (
        0,
        0,
        [],
        3,
    )
    assert len(world.rows(AdmtDecision)) == 3 and len(world.rows(ComplianceGap)) == 3

    # k4 is approved and runs: its record follows, still one row.
    world.approve("k4")
    world.call("send_offer", _offer("end_user@cmp.example", 4).args, "k4")
    world.set_status("k4", "executed")
    third = world.call("compliance_record_decisions", {"account_id": ACCOUNT}, "day3").output
    assert (third["recorded"], third["updated"], third["gaps"]) == (0, 1, [])
    k4 = world.rows(AdmtDecision, AdmtDecision.run_key == "k4")[0]
    assert (k4.outcome, k4.human_involved) == ("executed", True) and k4.executed_at is not None
    assert len(world.rows(AdmtDecision)) == 3


async def test_a_message_sent_after_the_opt_out_was_seen_is_a_gap(world: World) -> None:
    # Sent before compliance ever looked: the store cannot tell it followed the opt-out.
    _insert(world, "e-before", "churn_rescue", _email("executive_sponsor@cmp.example"), "allowed")
    world.call("send_email", _email("executive_sponsor@cmp.example").args, "e-before")
    world.set_status("e-before", "executed")
    first = world.call("compliance_record_decisions", {"account_id": ACCOUNT}, "day1").output
    assert first["gaps"] == [] and [r.contact_id for r in world.rows(OptOutSeen)] == ["c3"]
    # Sent after compliance saw the opt-out (past the gate, say by an older run).
    _insert(world, "e-after", "churn_rescue", _email("Executive_Sponsor@cmp.example"), "allowed")
    world.call("send_email", _email("executive_sponsor@cmp.example").args, "e-after")
    world.set_status("e-after", "executed")
    second = world.call("compliance_record_decisions", {"account_id": ACCOUNT}, "day2").output
    assert [(g["code"], g["subject"]) for g in second["gaps"]] == [
        ("compliance.opted_out_contacted", "e-after")
    ]
    third = world.call("compliance_record_decisions", {"account_id": ACCOUNT}, "day3").output
    assert third["gaps"] == [] and third["open_gaps"] == 1


# --- the pre-use notice ---------------------------------------------------------------


def test_notice_is_emailed_once_and_put_on_record(world: World) -> None:
    args = {"account_id": ACCOUNT, "contact_id": "c2"}
    dry = world.call("send_admt_notice", args, "n0", dry_run=True).output
    assert dry["status"] == "would_send" and "To: admin@cmp.example" in dry["preview"]
    assert (
        world.rows(ReceivedMail) == []
        and world.rows(Contact, Contact.id == "c2")[0].notice_at is None
    )

    sent = world.call("send_admt_notice", args, "n1").output
    assert sent["status"] == "sent" and sent["to"] == "admin@cmp.example"
    mails = world.rows(ReceivedMail)
    assert [(m.rcpt_to, m.message_id) for m in mails] == [("admin@cmp.example", sent["message_id"])]
    assert "opt out" in mails[0].body
    contact = world.rows(Contact, Contact.id == "c2")[0]
    assert contact.notice_at is not None
    notice = world.rows(AdmtNotice)
    assert [(n.contact_id, n.message_id) for n in notice] == [("c2", sent["message_id"])]

    assert world.call("send_admt_notice", args, "n1").replayed
    later = world.call("send_admt_notice", args, "n2").output
    assert later["status"] == "already_on_record" and later["message_id"] == sent["message_id"]
    assert len(world.rows(ReceivedMail)) == 1 and len(world.rows(AdmtNotice)) == 1


def test_notice_to_an_opted_out_contact_is_refused(world: World) -> None:
    with transaction(world.svc.db) as s:
        c3 = s.get(Contact, "c3")
        assert c3 is not None
        c3.notice_at = None
        s.add(c3)
    with pytest.raises(ContactOptedOut) as refused:
        world.call("send_admt_notice", {"account_id": ACCOUNT, "contact_id": "c3"}, "n3")
    assert refused.value.code == "consent.opted_out"
    assert world.rows(ReceivedMail) == [] and world.rows(AdmtNotice) == []
    assert world.rows(Contact, Contact.id == "c3")[0].notice_at is None
    assert world.rows(ToolCallRecord, ToolCallRecord.idempotency_key == "n3")[0].status == "failed"


# --- opt-outs honoured for actions in flight --------------------------------------------


def test_suppression_blocks_in_flight_actions_to_opted_out_contacts_only(world: World) -> None:
    opted_out = "executive_sponsor@cmp.example"
    _insert(world, "a-allowed", "churn_rescue", _email(opted_out), "allowed")
    _insert(world, "a-pending", "renewal", _offer(opted_out), "pending")
    with transaction(world.svc.db) as s:
        s.add(
            Approval(
                id="apr-pending",
                workflow_id="wf/a-pending",
                run_key="a-pending",
                agent="renewal",
                account_id=ACCOUNT,
                action={},
                payload_hash="h",
                roles=["csm"],
                reasons=[],
                created_at=NOW,
                due_at=NOW + timedelta(hours=24),
            )
        )
    notice = ProposedAction(
        tool="send_admt_notice",
        args={"account_id": ACCOUNT, "contact_id": "c3"},
        reason="no notice on record",
        expected_cost=0.5,
        expected_uplift=0.0,
        category="compliance",
    )
    _insert(world, "a-by-id", "compliance", notice, "allowed")
    _insert(world, "a-sent", "churn_rescue", _email(opted_out), "executed")
    _insert(world, "a-other", "churn_rescue", _email("champion@cmp.example"), "allowed")
    _insert(world, "a-denied", "churn_rescue", _email(opted_out), "denied")

    out = world.call("suppress_opted_out", {"account_id": ACCOUNT}, "s1").output
    assert sorted((a["run_key"], a["was"], a["contact_id"]) for a in out["actions"]) == [
        ("a-allowed", "allowed", "c3"),
        ("a-by-id", "allowed", "c3"),
        ("a-pending", "pending", "c3"),
    ]
    assert (out["blocked"], out["inbox_items_closed"], out["opted_out_contacts"]) == (3, 1, 1)
    status = {r.run_key: (r.status, r.rejection_reason) for r in world.rows(ActionRecord)}
    assert {k for k, (s, _) in status.items() if s == "blocked"} == {
        "a-allowed",
        "a-by-id",
        "a-pending",
    }
    assert all("c3" in (status[k][1] or "") for k in ("a-allowed", "a-by-id", "a-pending"))
    assert status["a-sent"] == ("executed", None)  # history is left alone
    assert status["a-other"] == ("allowed", None) and status["a-denied"] == ("denied", None)
    sent = world.rows(ActionRecord, ActionRecord.run_key == "a-sent")[0]
    assert sent.updated_at.replace(tzinfo=UTC) == NOW
    item = world.rows(Approval, Approval.id == "apr-pending")[0]
    assert (item.status, item.decided_by) == ("blocked", "compliance")

    again = world.call("suppress_opted_out", {"account_id": ACCOUNT}, "s2").output
    assert (again["blocked"], again["actions"]) == (0, [])
    assert len(world.rows(ActionRecord, col(ActionRecord.status) == "blocked")) == 3


# --- the model card -------------------------------------------------------------------


def test_model_card_is_recorded_once_a_day_from_the_model_in_use(
    world: World, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(Path(default_model_dir()) / "card.json", folder / "card.json")
    card = json.loads((folder / "card.json").read_text())
    world.svc.settings = Settings(data_dir=tmp_path, health_model_dir=folder)

    first = world.call("refresh_model_card", {"account_id": ACCOUNT}, "m1").output
    assert (first["version"], first["trained_at"], first["status"]) == (
        card["version"],
        card["trained_at"],
        "created",
    )
    assert first["metrics"]["validation"] == card["validation"]
    assert first["metrics"]["early_warning"]["recall"] == card["early_warning"]["recall"]
    assert (first["intended_use"], first["limits"]) == (card["intended_use"], card["limits"])
    assert first["missing"] == [] and first["day"] == datetime.now(UTC).date().isoformat()
    assert world.call("refresh_model_card", {}, "m2").output["status"] == "unchanged"
    assert len(world.rows(ModelCardRecord)) == 1

    (folder / "card.json").write_text(json.dumps({**card, "limits": ""}))
    edited = world.call("refresh_model_card", {}, "m3").output
    assert (edited["status"], edited["missing"]) == ("updated", ["limits"])
    rows = world.rows(ModelCardRecord)
    assert [(r.version, r.limits) for r in rows] == [(card["version"], "")]

    (folder / "card.json").write_text(json.dumps({**card, "version": "health-next"}))
    assert world.call("refresh_model_card", {}, "m4").output["status"] == "created"
    assert sorted(r.version for r in world.rows(ModelCardRecord)) == sorted(
        [card["version"], "health-next"]
    )


async def test_a_decision_a_bundle_let_through_without_a_notice_is_a_gap(
    world: World, tmp_path: Path
) -> None:
    # A bundle that does not ask for the notice (edited by CS ops, say): the record says so.
    shutil.copytree(REPO / "policies", tmp_path / "policies")
    consent = tmp_path / "policies" / "autopilot" / "consent" / "policy.rego"
    rule = "not input.action.recipient.notice_on_record == true"
    consent.write_text(consent.read_text().replace(rule, "false"))
    world.svc.policy = RegoEngine(tmp_path / "policies")
    renewal = world.svc.specs["renewal"]
    assert await world.gate("k2", _offer("admin@cmp.example"), renewal) == "require_approval"
    world.approve("k2")
    world.call("send_offer", _offer("admin@cmp.example").args, "k2")
    world.set_status("k2", "executed")
    out = world.call("compliance_record_decisions", {"account_id": ACCOUNT}, "day1").output
    assert [(g["code"], g["subject"]) for g in out["gaps"]] == [("compliance.no_notice", "k2")]
    k2 = world.rows(AdmtDecision, AdmtDecision.run_key == "k2")[0]
    assert (k2.notice_on_record, k2.human_involved, k2.contact_id) == (False, True, "c2")
    assert (
        k2.bundle_hash == world.svc.policy.bundle_hash != RegoEngine(REPO / "policies").bundle_hash
    )
