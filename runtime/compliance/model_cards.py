"""Model cards: the Health 2.0 scoring model (its card.json, the accounts it scored, the
days the Compliance agent recorded it) and every planner configuration the agents use.
Today every agent plans offline (the playbook as written, no language model): the card
says so rather than describing an LLM that is not in use."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlmodel import Session, select

from autopilot.runtime.compliance import evidence as ev
from autopilot.runtime.compliance.render import Document
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.store.customer import AccountScore, RiskAlert

CARD_FIELDS = (
    "version",
    "trained_at",
    "algorithm",
    "training_window",
    "validation",
    "intended_use",
    "limits",
)


def build(ctx: ev.ExportContext) -> Document:
    doc = Document("model-cards", "Model cards", ctx.now, ctx.source())
    card, path = ev.health_card(ctx)
    with Session(ctx.db) as s:
        versions = Counter(s.exec(select(AccountScore.model_version)).all())
        alerts = len(s.exec(select(RiskAlert.id)).all())
        days = ev.model_card_days(s)
    doc.add(
        "health_model",
        "Health 2.0 scoring model",
        {
            **{k: card.get(k) for k in CARD_FIELDS},
            "features": card.get("features", []),
            "alert_threshold": card.get("alert_threshold"),
            "early_warning": card.get("early_warning") or {},
            "card_file": str(path),
            "card_hash": sha256_hex(card),
            "accounts_scored": [
                {"model_version": v, "accounts": n} for v, n in sorted(versions.items())
            ],
            "risk_alerts": alerts,
            "recorded_days": days,
        },
    )
    for k in CARD_FIELDS:
        if not card.get(k):
            doc.gap(f"model.card_missing_{k}", "health_model", f"{path} has no {k}")
    if not days:
        doc.gap(
            "model.no_card_record",
            "health_model",
            "no day's model card was recorded by the Compliance agent",
        )
    if versions and set(versions) != {card.get("version")}:
        doc.gap(
            "model.version_mismatch",
            "health_model",
            f"scores from versions {sorted(versions)} while the card is {card.get('version')}",
        )
    agents = ev.agent_rows(ctx)
    configs: dict[str, dict[str, Any]] = {}
    for a in agents:  # one card per distinct model configuration
        key = json.dumps(a["llm"], sort_keys=True)
        configs.setdefault(key, {"llm": a["llm"], "kind": a["planner"], "agents": []})
        configs[key]["agents"].append(a["agent"])
    doc.add(
        "planners",
        "Planner configurations in use",
        {
            "configurations": [
                {
                    "kind": c["kind"],
                    "agents": sorted(c["agents"]),
                    "language_model": None if c["llm"]["provider"] == "offline" else c["llm"],
                    "description": "deterministic: the playbook as written, the optimizer choosing among a "
                    "step's options; no language model is called"
                    if c["llm"]["provider"] == "offline"
                    else f"{c['llm'].get('provider')} model {c['llm'].get('model')} proposes actions over the "
                    "agent's granted tools; the optimizer chooses and the policy gate decides",
                }
                for _, c in sorted(configs.items())
            ],
            "llm_in_use": any(c["llm"]["provider"] != "offline" for c in configs.values()),
        },
    )
    return doc
