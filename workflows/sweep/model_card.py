"""The daily model card, refreshed by the sweep itself. The card is the deployment's (one
record per day and model version, no account's), and the Compliance agent now runs only
on accounts with compliance work: on a day none is due, no run would put it on record.
So a sweep that covers an agent whose spec uses `refresh_model_card` calls it once, through
the worker's registry, before the accounts; and a card it writes goes into the audit log
(the default organisation's chain: it is no organisation's account)."""

from __future__ import annotations

import logging
from datetime import datetime

from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.services import Services
from autopilot.runtime.store import audit
from autopilot.runtime.store.audit import DEFAULT_ORG
from autopilot.tools.registry import ToolContext

CARD_TOOL = "refresh_model_card"
log = logging.getLogger(__name__)


def card_agents(svc: Services, agents: list[str] | None) -> list[str]:
    """The scheduled agents of this sweep that keep the model card."""
    return sorted(
        name
        for name, spec in svc.specs.items()
        if spec.schedule is not None
        and (agents is None or name in agents)
        and CARD_TOOL in spec.tools
    )


def refresh_card(svc: Services, agents: list[str] | None, workflow_id: str) -> str | None:
    """Today's card on record if this sweep keeps it: its status (created | updated |
    unchanged), "failed" if the card cannot be read or stored (the sweep goes on: its
    runs matter more; the next sweep tries again), None if no agent of the sweep keeps it."""
    keepers = card_agents(svc, agents)
    if not keepers:
        return None
    now: datetime = svc.clock()
    ctx = ToolContext(
        idempotency_key=f"sweep:{now.date().isoformat()}:{CARD_TOOL}",
        dry_run=False,
        db=svc.db,
        settings=svc.settings,
    )
    try:
        card = svc.tools.call(CARD_TOOL, {}, ctx)
        agent = keepers[0]
        # One entry per card on record (a card edited the same day is a new one), written
        # whatever the call found: a retried sweep whose first try stored the card and
        # lost its entry finds the card "unchanged", and the entry is written then.
        facts = {k: v for k, v in card.items() if k not in ("status", "age_days", "dry_run")}
        audit.append(
            svc.db,
            [
                AuditEvent(
                    workflow_id=workflow_id,
                    run_key=f"model_card:{card['day']}:{sha256_hex(facts)[:16]}",
                    step="execute",
                    actor=f"agent:{agent}",
                    input_hash=sha256_hex({}),
                    decision={"tool": CARD_TOOL, "result": card},
                    bundle_hash=svc.policy.bundle_hash,
                    spec_hash=svc.spec_hashes()[agent],
                    org_id=DEFAULT_ORG,
                )
            ],
        )
    except Exception as err:  # noqa: BLE001 - the card must not stop the day's runs
        log.warning("sweep: the model card was not refreshed: %s", err)
        return "failed"
    return str(card["status"])
