"""ISO/IEC 42001 evidence pack: the AI policy as configured, the objectives the agents are
given, a risk assessment from the controls and their figures, the Annex A control
objectives mapped to where each lives in the product, and the monitoring records.

Controls that are organisational (roles, resources, impact assessment sign-off) live
outside the product: they are listed, and the missing evidence is a gap."""

from __future__ import annotations

from sqlmodel import Session

from autopilot.runtime.compliance import evidence as ev
from autopilot.runtime.compliance.render import Document

# Annex A control objectives -> where the product implements them ("" = outside the product).
ANNEX_A = (
    ("A.2", "Policies related to AI", "policies/ (Rego bundle, versioned by bundle hash)"),
    (
        "A.3",
        "Internal organization",
        "approval roles and escalation in policies/autopilot/approval/data.json",
    ),
    ("A.4", "Resources for AI systems", ""),
    ("A.5", "Assessing impacts of AI systems", ""),
    (
        "A.6",
        "AI system life cycle",
        "agents/*.yaml (validated specs), runtime/health/models (model cards)",
    ),
    ("A.7", "Data for AI systems", "runtime/store (events, rollups), Health 2.0 training card"),
    (
        "A.8",
        "Information for interested parties",
        "ADMT pre-use notice (tools/compliance.py), access-request export",
    ),
    ("A.9", "Use of AI systems", "policy gate, approval inbox, audit log"),
    ("A.10", "Third-party and customer relationships", "tool registry: scopes, regions, sandbox"),
)


def build(ctx: ev.ExportContext) -> Document:
    doc = Document(
        "iso42001", "ISO/IEC 42001: AI management system evidence pack", ctx.now, ctx.source()
    )
    agents = ev.agent_rows(ctx)
    config = ev.approval_config(ctx)
    with Session(ctx.db) as s:
        decisions = ev.decision_figures(s)
        actions = ev.action_figures(s)
        approvals = ev.approval_figures(s)
        tools = ev.tool_figures(s)
        outcomes = ev.outcome_figures(s)
        audit = ev.audit_figures(s)
        cards = ev.model_card_days(s)
    doc.add(
        "ai_policy",
        "AI policy (as configured)",
        {
            "policy_bundle_hash": ctx.policy.bundle_hash,
            "approval": config,
            "decision_log_retention_days": ctx.settings.decision_log_retention_days,
            "autonomy_by_agent": [{"agent": a["agent"], "autonomy": a["autonomy"]} for a in agents],
        },
    )
    specs = ctx.specs()
    doc.add(
        "objectives",
        "Objectives",
        {
            "agents": [
                {
                    "agent": sp.name,
                    "goal": sp.goal.description,
                    "metric": sp.goal.metric,
                    "target": sp.goal.target,
                }
                for sp in sorted(specs.values(), key=lambda x: x.name)
            ],
            "measured": {
                "autonomy_rate": actions["autonomy_rate"],
                "approval_rate": approvals["approval_rate"],
                "tool_error_rate": tools["error_rate"],
            },
        },
    )
    doc.add(
        "risk_assessment",
        "Risk assessment",
        {
            "risks": [
                {
                    "risk": "action outside limits",
                    "likelihood_evidence": decisions["by_outcome"].get("deny", 0),
                    "treatment": "deny at the policy gate",
                },
                {
                    "risk": "unreviewed significant decision",
                    "likelihood_evidence": actions["needed_approval"],
                    "treatment": "approval by the configured roles",
                },
                {
                    "risk": "failed or unknown side effect",
                    "likelihood_evidence": tools["failed"] + outcomes["total"],
                    "treatment": "idempotency keys, outcome checks in the inbox",
                },
            ],
        },
    )
    controls = []
    for ref, title, where in ANNEX_A:
        controls.append(
            {"control": ref, "objective": title, "implemented_in": where or "outside the product"}
        )
        if not where:
            doc.gap(
                f"annex_a.{ref}",
                "annex_a_controls",
                f"{ref} {title}: organisational evidence, not held by the product",
            )
    doc.add("annex_a_controls", "Annex A controls", {"controls": controls})
    doc.add(
        "monitoring_records",
        "Monitoring records",
        {
            "policy_decisions": decisions,
            "actions": actions,
            "approvals": approvals,
            "tool_calls": tools,
            "outcome_checks": outcomes,
            "audit": audit,
            "model_cards": cards,
        },
    )
    if not cards:
        doc.gap(
            "model.no_card_record",
            "monitoring_records",
            "no daily model card was recorded (the Compliance agent has not run)",
        )
    if not decisions["total"]:
        doc.gap("decisions.none", "monitoring_records", "the decision log is empty")
    return doc
