"""The figures every framework reads, computed once per export from the store and the run:
decisions by outcome, approvals and who gave them, tool errors, unknown outcomes, the audit
chain, the configured thresholds and roles, the agents and their tools, the bench results.

Every number here is a count over rows (or a value read from the bundle, the specs or a
results file); a framework module only arranges them. Absent evidence is returned as
`None`/empty and turned into a gap by the framework that needs it."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.agents.specs import load_specs
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.agent_spec import AgentSpec
from autopilot.runtime.health.model import default_model_dir
from autopilot.runtime.llm.config import resolve
from autopilot.runtime.llm.errors import LlmConfigError
from autopilot.runtime.policy.engine import PolicyEngine
from autopilot.runtime.store.actions import ActionRecord, PolicyDecisionRecord
from autopilot.runtime.store.approvals import Approval, ApprovalVote
from autopilot.runtime.store.audit import AuditCheckpoint, AuditEntry, check_chain
from autopilot.runtime.store.compliance import ModelCardRecord
from autopilot.runtime.store.outcomes import OutcomeCheck
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.tools.registry import Registry


@dataclass
class ExportContext:
    """What an export reads: the store, the settings, the active policy bundle, the tools."""

    db: Engine
    settings: Settings
    policy: PolicyEngine
    tools: Registry
    now: datetime

    def specs(self) -> dict[str, AgentSpec]:
        return load_specs(self.settings.agents_path)

    def source(self) -> dict[str, Any]:
        url = self.settings.db_url
        return {
            "store": url.split("@")[-1],  # never the credentials of a database URL
            "bundle_hash": self.policy.bundle_hash,
            "data_dir": str(self.settings.data_dir),
        }


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def decision_figures(s: Session) -> dict[str, Any]:
    """The decision log: every gate evaluation, by outcome and by deny code."""
    rows = s.exec(select(PolicyDecisionRecord.outcome, PolicyDecisionRecord.codes)).all()
    codes = Counter(c for _, cs in rows for c in cs.split() if c)
    bundles = Counter(s.exec(select(PolicyDecisionRecord.bundle_hash)).all())
    return {
        "total": len(rows),
        "bundles": [{"bundle_hash": b, "decisions": n} for b, n in sorted(bundles.items())],
        "by_outcome": dict(sorted(Counter(o for o, _ in rows).items())),
        "deny_codes": [{"code": c, "count": n} for c, n in sorted(codes.items())],
    }


def action_figures(s: Session) -> dict[str, Any]:
    rows = s.exec(select(ActionRecord.status, ActionRecord.needed_approval)).all()
    executed = [n for st, n in rows if st == "executed"]
    return {
        "total": len(rows),
        "by_status": dict(sorted(Counter(st for st, _ in rows).items())),
        "needed_approval": sum(1 for _, n in rows if n),
        "executed_without_a_person": sum(1 for n in executed if not n),
        "autonomy_rate": rate(sum(1 for n in executed if not n), len(executed)),
    }


def approval_figures(s: Session) -> dict[str, Any]:
    """Approvals by status, the approval rate among decided items, and who voted how."""
    statuses = Counter(s.exec(select(Approval.status)).all())
    decided = statuses["approved"] + statuses["rejected"]
    votes = s.exec(select(ApprovalVote)).all()
    by = Counter((v.actor, v.role, v.verdict) for v in votes)
    roles = Counter(r for (roles,) in [(a.roles,) for a in s.exec(select(Approval))] for r in roles)
    return {
        "total": sum(statuses.values()),
        "by_status": dict(sorted(statuses.items())),
        "approval_rate": rate(statuses["approved"], decided),
        "roles_required": dict(sorted(roles.items())),
        "votes": [
            {"actor": a, "role": r, "verdict": v, "count": n} for (a, r, v), n in sorted(by.items())
        ],
    }


def tool_figures(s: Session) -> dict[str, Any]:
    rows = s.exec(select(ToolCallRecord.tool, ToolCallRecord.status)).all()
    per: dict[str, Counter[str]] = {}
    for tool, status in rows:
        per.setdefault(tool, Counter())[status] += 1
    failed = sum(1 for _, st in rows if st == "failed")
    return {
        "calls": len(rows),
        "failed": failed,
        "error_rate": rate(failed, len(rows)),
        "by_tool": [
            {
                "tool": t,
                "calls": sum(c.values()),
                "failed": c["failed"],
                "error_rate": rate(c["failed"], sum(c.values())),
            }
            for t, c in sorted(per.items())
        ],
    }


def outcome_figures(s: Session) -> dict[str, Any]:
    statuses = Counter(s.exec(select(OutcomeCheck.status)).all())
    return {"total": sum(statuses.values()), "by_status": dict(sorted(statuses.items()))}


def audit_figures(s: Session) -> dict[str, Any]:
    chain = check_chain(s)
    first = s.exec(select(AuditEntry.at).order_by(col(AuditEntry.seq)).limit(1)).first()
    return {
        "entries": len(s.exec(select(AuditEntry.seq)).all()),
        "verified": chain.checked,
        "chain_intact": chain.intact,
        "first_break": None if chain.broken is None else chain.broken.code,
        "checkpoints": len(s.exec(select(AuditCheckpoint.id)).all()),
        "oldest_entry": first.isoformat() if first else None,
    }


def failures(s: Session) -> list[dict[str, Any]]:
    """Logged failures, the raw material of an incident report: failed actions and tool
    calls, and actions whose outcome is still unknown."""
    out: list[dict[str, Any]] = []
    for a in s.exec(select(ActionRecord).where(ActionRecord.status == "failed")):
        out.append(
            {
                "kind": "action_failed",
                "run_key": a.run_key,
                "agent": a.agent,
                "account_id": a.account_id,
                "tool": a.tool,
                "at": a.updated_at.isoformat(),
                "detail": a.rejection_reason or "",
            }
        )
    for c in s.exec(select(ToolCallRecord).where(ToolCallRecord.status == "failed")):
        out.append(
            {
                "kind": "tool_call_failed",
                "run_key": c.idempotency_key,
                "agent": "",
                "account_id": "",
                "tool": c.tool,
                "at": (c.finished_at or c.started_at).isoformat(),
                "detail": c.error or "",
            }
        )
    for o in s.exec(select(OutcomeCheck).where(col(OutcomeCheck.status).in_(["open", "resend"]))):
        out.append(
            {
                "kind": "outcome_unknown",
                "run_key": o.run_key,
                "agent": o.agent,
                "account_id": o.account_id,
                "tool": o.tool,
                "at": o.opened_at.isoformat(),
                "detail": o.error,
            }
        )
    return sorted(out, key=lambda f: (f["at"], f["run_key"]))


def approval_config(ctx: ExportContext) -> dict[str, Any]:
    """The approval thresholds and roles the active bundle holds (not a copy of the docs)."""
    limits = ctx.policy.data("autopilot/approval/limits") or {}
    discount = (ctx.policy.data("autopilot/discount/limits") or {}).get("segments", {})
    roles = limits.get("roles", {})
    return {
        "thresholds": {k: v for k, v in sorted(limits.items()) if k != "roles"},
        "roles": [{"role": r, **cfg} for r, cfg in sorted(roles.items())],
        "discount_auto_approve_pct": {
            seg: d.get("auto_approve_pct") for seg, d in sorted(discount.items())
        },
    }


def _llm(spec: AgentSpec, ctx: ExportContext) -> dict[str, Any]:
    """The model configuration an agent plans with, as records may show it (no key, no
    key path); a configuration that does not resolve is shown with its error."""
    try:
        return resolve(spec.planner, ctx.settings).public()
    except LlmConfigError as err:
        return {"provider": "unresolved", "error": str(err)}


def agent_rows(ctx: ExportContext) -> list[dict[str, Any]]:
    return [
        {
            "agent": spec.name,
            "autonomy": spec.autonomy,
            "planner": spec.planner.kind,
            "llm": _llm(spec, ctx),
            "tools": sorted(spec.tools),
            "scopes": sorted(spec.scopes),
            "approval_role": spec.approvals.role,
            "always_approved": sorted(spec.approvals.always),
        }
        for spec in sorted(ctx.specs().values(), key=lambda sp: sp.name)
    ]


def tool_rows(ctx: ExportContext, names: set[str]) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(names):
        t = ctx.tools.tools.get(name)
        if t is None:
            continue
        rows.append(
            {
                "tool": t.name,
                "effect": t.effect,
                "scopes": sorted(t.scopes),
                "significant": t.significant,
                "irreversible": t.irreversible,
                "compensate": t.compensate,
                "sandboxed": t.sandbox is not None or t.confined,
                "region": ctx.settings.tool_regions.get(t.name, "local"),
            }
        )
    return rows


def bench_results(ctx: ExportContext) -> list[dict[str, Any]]:
    """The newest results file of each bench (`<data dir>/bench/<kind>-<time>.json`)."""
    folder = ctx.settings.data_dir / "bench"
    newest: dict[str, Path] = {}
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        newest[f.stem.split("-")[0]] = f  # sorted by name: the time stamp orders them
    out = []
    for kind, f in sorted(newest.items()):
        try:
            body = json.loads(f.read_text())
        except (OSError, ValueError):
            continue  # an unreadable file is not evidence; the caller reports the gap
        figures = {k: v for k, v in body.items() if isinstance(v, int | float | str | dict)}
        out.append({"bench": kind, "file": str(f), "figures": figures})
    return out


def kb_eval_queries() -> int:
    """The labelled queries the knowledge base is evaluated on (`autopilot kb eval`)."""
    text = (resources.files("autopilot.runtime.kb") / "kb_eval.json").read_text()
    return len(json.loads(text))


def health_card(ctx: ExportContext) -> tuple[dict[str, Any], Path]:
    folder = ctx.settings.health_model_dir or default_model_dir()
    return json.loads((folder / "card.json").read_text()), folder / "card.json"


def model_card_days(s: Session) -> list[dict[str, Any]]:
    rows = s.exec(select(ModelCardRecord).order_by(col(ModelCardRecord.day))).all()
    return [
        {
            "day": r.day.isoformat(),
            "version": r.version,
            "card_hash": r.card_hash,
            "refreshed_at": r.refreshed_at.isoformat(),
        }
        for r in rows
    ]


def utc_now() -> datetime:
    return datetime.now(UTC)
