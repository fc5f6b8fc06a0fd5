"""CPPA ADMT: the pre-use notice for the automated decisions in use, the opt-out records,
and the answer to one contact's access request (`--contact`): which automated decisions
concerned them, the logic in plain words (the agent's purpose, the gate's reasons, the
Health 2.0 drivers of their account) and the outcome. Only that contact's decisions are
listed: an action addressed to them, or a recorded ADMT decision naming them."""

from __future__ import annotations

import importlib
from typing import Any

from sqlmodel import Session, col, or_, select

from autopilot.runtime.compliance import evidence as ev
from autopilot.runtime.compliance.render import Document
from autopilot.runtime.store.accounts import Contact
from autopilot.runtime.store.actions import ActionRecord, PolicyDecisionRecord
from autopilot.runtime.store.approvals import Approval, ApprovalVote
from autopilot.runtime.store.audit import AuditEntry
from autopilot.runtime.store.compliance import AdmtDecision, AdmtNotice, OptOutSeen
from autopilot.runtime.store.customer import AccountScore


class UnknownContact(LookupError):
    """`--contact` names no contact in the store."""


def _consent_model() -> Any:
    """ConsentRecord, when the store has it (added beside this export; older stores lack it)."""
    try:
        return importlib.import_module("autopilot.runtime.store.consent").ConsentRecord
    except (ImportError, AttributeError):
        return None


def _opt_outs(s: Session, doc: Document) -> list[dict[str, Any]]:
    consent = _consent_model()
    if consent is not None:
        rows = s.exec(select(consent).order_by(col(consent.at), col(consent.id))).all()
        return [
            {
                "contact_id": r.contact_id,
                "account_id": r.account_id,
                "email": r.email,
                "kind": r.kind,
                "choice": r.choice,
                "source": r.source,
                "at": r.at.isoformat(),
            }
            for r in rows
        ]
    doc.gap(
        "admt.no_consent_records",
        "opt_outs",
        "this store has no consent records: listed from the contacts' opt-out flags and when compliance first saw them",
    )
    seen = {o.contact_id: o.first_seen_at for o in s.exec(select(OptOutSeen))}
    return [
        {
            "contact_id": c.id,
            "account_id": c.account_id,
            "email": c.email,
            "kind": "email",
            "choice": "opt_out",
            "source": "contact flag",
            "at": seen[c.id].isoformat() if c.id in seen else None,
        }
        for c in s.exec(select(Contact).where(col(Contact.opted_out)).order_by(col(Contact.id)))
    ]


def _reasons(s: Session, run_key: str) -> list[str]:
    """The gate's own words for why the action needed a person or was denied."""
    last = s.exec(
        select(PolicyDecisionRecord)
        .where(PolicyDecisionRecord.run_key == run_key)
        .order_by(col(PolicyDecisionRecord.id).desc())
    ).first()
    if last is None:
        return []
    result = last.result
    return [v.get("msg", "") for v in result.get("deny", [])] + [
        f"{a.get('role')}: {a.get('reason')}" for a in result.get("approval", [])
    ]


def _review(s: Session, run_key: str, workflow_id: str, payload_hash: str) -> str:
    """Who reviewed the action, from the inbox items its run opened for it: the ones its
    audit trail names (`approve` steps), or the one still open on its exact payload."""
    steps = s.exec(
        select(AuditEntry).where(AuditEntry.run_key == run_key, AuditEntry.step == "approve")
    ).all()
    ids = {str(e.decision.get("approval_id")) for e in steps if e.decision.get("approval_id")}
    items = list(s.exec(select(Approval).where(col(Approval.id).in_(sorted(ids))))) if ids else []
    if not items and workflow_id:
        items = list(
            s.exec(
                select(Approval).where(
                    Approval.workflow_id == workflow_id, Approval.payload_hash == payload_hash
                )
            )
        )
    if not items:
        return "none required"
    parts = []
    for item in sorted(items, key=lambda i: i.created_at):
        votes = s.exec(select(ApprovalVote).where(ApprovalVote.approval_id == item.id)).all()
        who = ", ".join(f"{v.verdict} by {v.actor} ({v.role})" for v in votes)
        parts.append(f"{item.status}" + (f": {who}" if who else ""))
    return "; ".join(parts)


def access_response(ctx: ev.ExportContext, s: Session, contact_id: str) -> dict[str, Any]:
    contact = s.get(Contact, contact_id)
    if contact is None:
        raise UnknownContact(f"--contact: no contact {contact_id!r}")
    specs = ctx.specs()
    actions = s.exec(select(ActionRecord).where(ActionRecord.recipient == contact.email)).all()
    recorded = {
        d.run_key: d
        for d in s.exec(
            select(AdmtDecision).where(
                or_(
                    col(AdmtDecision.contact_id) == contact.id,
                    col(AdmtDecision.recipient) == contact.email,
                )
            )
        )
    }
    by_key = {a.run_key: a for a in actions if a.account_id == contact.account_id}
    score = s.get(AccountScore, contact.account_id)
    factors = score.factors if score else []
    drivers = [f.get("label") or f.get("feature") for f in factors if isinstance(f, dict)][:3]
    decisions = []
    for key in sorted(set(by_key) | set(recorded)):
        a, d = by_key.get(key), recorded.get(key)
        agent = a.agent if a else d.agent if d else ""
        workflow_id, payload_hash = (a.workflow_id, a.payload_hash) if a else ("", "")
        spec = specs.get(agent)
        decisions.append(
            {
                "run_key": key,
                "agent": agent,
                "tool": a.tool if a else d.tool if d else "",
                "decided_at": (d.decided_at if d else a.created_at if a else ctx.now).isoformat(),
                "logic": (spec.description.strip() if spec else f"agent {agent}")
                + (
                    f" The account's health drivers: {', '.join(str(x) for x in drivers)}."
                    if drivers
                    else ""
                ),
                "gate_reasons": _reasons(s, key),
                "human_review": _review(s, key, workflow_id, payload_hash),
                "outcome": a.status if a else d.outcome if d else "",
                "significant": d is not None
                or bool(
                    ctx.tools.tools.get(a.tool if a else "")
                    and ctx.tools.tools[a.tool if a else ""].significant
                ),
            }
        )
    notice = s.get(AdmtNotice, contact.id)
    return {
        "contact_id": contact.id,
        "account_id": contact.account_id,
        "email": contact.email,
        "notice_given_at": notice.sent_at.isoformat() if notice else None,
        "opted_out": contact.opted_out,
        "admt_opted_out": bool(getattr(contact, "admt_opted_out", False)),
        "decisions": decisions,
        "count": len(decisions),
    }


def build(ctx: ev.ExportContext, *, contact_id: str | None = None) -> Document:
    doc = Document(
        "admt", "CPPA ADMT: pre-use notice, opt-outs and access request", ctx.now, ctx.source()
    )
    agents = ev.agent_rows(ctx)
    tools = {t for a in agents for t in a["tools"]}
    significant = [r for r in ev.tool_rows(ctx, tools) if r["significant"]]
    card, _ = ev.health_card(ctx)
    with Session(ctx.db) as s:
        notices = s.exec(select(AdmtNotice).order_by(col(AdmtNotice.sent_at))).all()
        recorded = s.exec(select(AdmtDecision)).all()
        opt_outs = _opt_outs(s, doc)
        access = access_response(ctx, s, contact_id) if contact_id else None
    doc.add(
        "pre_use_notice",
        "Pre-use notice",
        {
            "automated_decisions": [
                {
                    "tool": r["tool"],
                    "agents": sorted(a["agent"] for a in agents if r["tool"] in a["tools"]),
                    "human_review": "a person reviews every significant decision before it takes effect",
                }
                for r in significant
            ],
            "scoring_model": {
                "version": card.get("version"),
                "intended_use": card.get("intended_use", ""),
            },
            "right_to_opt_out": "reply STOP or use the preferences link; staff may record it",
            "notices_given": len(notices),
            "decisions_recorded": len(recorded),
            "decisions_without_notice": sum(1 for d in recorded if not d.notice_on_record),
        },
    )
    if not notices:
        doc.gap(
            "admt.no_notice_sent",
            "pre_use_notice",
            "no pre-use notice has been sent to any contact",
        )
    doc.add("opt_outs", "Opt-out records", {"records": opt_outs, "count": len(opt_outs)})
    if access is None:
        doc.add(
            "access_request",
            "Access-request response",
            {"contact_id": None, "decisions": [], "count": 0},
        )
        doc.gap(
            "admt.no_contact", "access_request", "no --contact given: no access-request response"
        )
    else:
        doc.add("access_request", "Access-request response", access)
    return doc
