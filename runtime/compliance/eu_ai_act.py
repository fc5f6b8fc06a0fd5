"""EU AI Act: technical documentation in the order of Annex IV, and a serious-incident
report (Art. 73) drafted from the failures the run logged. The figures are the store's;
what the store cannot show (a risk register, a post-market plan signed by a person) is a
gap that names what to add."""

from __future__ import annotations

from sqlmodel import Session, select

from autopilot.runtime.compliance import evidence as ev
from autopilot.runtime.compliance.render import Document
from autopilot.runtime.store.events import Event


def build(ctx: ev.ExportContext) -> Document:
    doc = Document(
        "eu-ai-act", "EU AI Act: technical documentation (Annex IV)", ctx.now, ctx.source()
    )
    agents = ev.agent_rows(ctx)
    used_tools = {t for a in agents for t in a["tools"]}
    card, card_path = ev.health_card(ctx)
    with Session(ctx.db) as s:
        decisions = ev.decision_figures(s)
        actions = ev.action_figures(s)
        approvals = ev.approval_figures(s)
        tools = ev.tool_figures(s)
        outcomes = ev.outcome_figures(s)
        audit = ev.audit_figures(s)
        failures = ev.failures(s)
        events = len(s.exec(select(Event.id)).all())
        cards = ev.model_card_days(s)
    doc.add(
        "system_description",
        "1. System description and intended purpose",
        {
            "name": "CS Autopilot",
            "intended_purpose": "policy-gated agents that propose and take Customer Success actions "
            "(emails, offers, tasks) on B2B accounts; every action passes a Rego policy gate and, "
            "where the policy or the agent says so, a person's approval",
            "agents": agents,
            "events_processed": events,
            "actions_proposed": actions["total"],
        },
    )
    doc.add(
        "components",
        "2. Components and versions",
        {
            "policy_bundle_hash": ctx.policy.bundle_hash,
            "health_model": {
                "version": card.get("version"),
                "algorithm": card.get("algorithm"),
                "card": str(card_path),
            },
            "planners": sorted({a["planner"] for a in agents}),
            "tools": ev.tool_rows(ctx, used_tools),
        },
    )
    doc.add(
        "data_governance",
        "3. Data and data governance",
        {
            "training_source": card.get("source", ""),
            "training_window": card.get("training_window", ""),
            "training_samples": card.get("samples"),
            "label": card.get("label", ""),
            "tool_regions": dict(sorted(ctx.settings.tool_regions.items())),
        },
    )
    config = ev.approval_config(ctx)
    doc.add(
        "human_oversight",
        "4. Human oversight",
        {
            **config,
            "approval_valid_hours": ctx.settings.approval_valid_hours,
            "approvals": approvals,
            "actions_needing_a_person": actions["needed_approval"],
            "autonomy_rate": actions["autonomy_rate"],
        },
    )
    if not approvals["total"]:
        doc.gap(
            "oversight.no_approvals",
            "human_oversight",
            "no approval was requested in this store: the oversight figures are empty",
        )
    validation = card.get("validation") or {}
    bench = ev.bench_results(ctx)
    doc.add(
        "accuracy_robustness",
        "5. Accuracy, robustness and cybersecurity",
        {
            "health_model_validation": validation,
            "early_warning": card.get("early_warning") or {},
            "bench": bench,
            "kb_eval": {
                "labelled_queries": ev.kb_eval_queries(),
                "result": next((b["figures"] for b in bench if b["bench"] == "kb"), None),
            },
            "tool_error_rate": tools["error_rate"],
            "tool_calls": tools,
            "policy_decisions": decisions,
        },
    )
    if not validation:
        doc.gap(
            "model.no_validation", "accuracy_robustness", f"{card_path} has no validation figures"
        )
    if not bench:
        doc.gap(
            "bench.no_results",
            "accuracy_robustness",
            f"no bench results under {ctx.settings.data_dir / 'bench'}: run `python -m autopilot.evals.bench.e2e`",
        )
    if not any(b["bench"] == "kb" for b in bench):
        doc.gap(
            "kb.eval_not_run",
            "accuracy_robustness",
            f"no knowledge-base recall result under {ctx.settings.data_dir / 'bench'}: save `autopilot kb eval --json` there as kb-<time>.json",
        )
    doc.add(
        "logging",
        "6. Logging and retention",
        {
            "audit": audit,
            "decision_log_entries": decisions["total"],
            "decision_log_retention_days": ctx.settings.decision_log_retention_days,
            "audit_checkpoint_every": ctx.settings.audit_checkpoint_every,
        },
    )
    if not audit["checkpoints"]:
        doc.gap(
            "audit.no_checkpoint", "logging", "no signed checkpoint of the audit chain's head yet"
        )
    doc.add(
        "risk_management",
        "7. Risk management",
        {
            "controls": [
                {
                    "risk": "an action beyond budget, discount or contact limits",
                    "control": "policy gate (deny)",
                    "evidence": f"{decisions['by_outcome'].get('deny', 0)} denials in the decision log",
                },
                {
                    "risk": "a significant automated decision without review",
                    "control": "approval routing",
                    "evidence": f"{approvals['total']} approvals requested",
                },
                {
                    "risk": "a side effect repeated or lost",
                    "control": "idempotency keys and outcome checks",
                    "evidence": f"{outcomes['total']} outcome checks opened",
                },
                {
                    "risk": "a tampered trail",
                    "control": "hash-chained audit log",
                    "evidence": f"chain intact: {audit['chain_intact']}",
                },
            ],
        },
    )
    doc.gap(
        "risk.no_register",
        "risk_management",
        "the store holds controls, not a risk register with owners and residual ratings: attach it",
    )
    doc.add(
        "post_market_monitoring",
        "8. Post-market monitoring",
        {
            "outcome_checks": outcomes,
            "failures_logged": len(failures),
            "model_cards_recorded": len(cards),
        },
    )
    doc.gap(
        "monitoring.no_plan",
        "post_market_monitoring",
        "no written post-market monitoring plan is stored: the figures above are its inputs",
    )
    doc.add(
        "incident_report",
        "9. Serious-incident report (draft, Art. 73)",
        {
            "failures": failures,
            "count": len(failures),
            "status": "draft: a person assesses whether any failure is a serious incident",
        },
    )
    if not failures:
        doc.gap(
            "incident.none_logged",
            "incident_report",
            "no failure was logged: the report has no incidents to assess",
        )
    return doc
