"""Gauges that are state, not events: approvals pending and the age of the oldest,
spend this quarter against the segment's budget. Read from the store at scrape time, so
they are right whichever process (API, worker, CLI) changed the store, and cost nothing
between scrapes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from autopilot.runtime.ledger.spend import segment_spend
from autopilot.runtime.observability.metrics import REGISTRY
from autopilot.runtime.policy.engine import PolicyEngine, PolicyLoadError
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.approvals import Approval


class StoreCollector(Collector):
    """Gauges read from the store at scrape time: one query each, per organisation."""

    def __init__(
        self,
        db: Engine,
        policy: PolicyEngine,
        clock: Callable[[], datetime],
    ) -> None:
        self.db, self.policy, self.clock = db, policy, clock

    def describe(self) -> Iterable[Metric]:
        return []  # collected only at scrape time (registering must not query the store)

    def collect(self) -> Iterable[Metric]:
        now = self.clock()
        pending = GaugeMetricFamily(
            "autopilot_approvals_pending", "Inbox items waiting for a decision.", labels=["org"]
        )
        oldest = GaugeMetricFamily(
            "autopilot_approvals_pending_oldest_age_seconds",
            "Age of the oldest pending inbox item.",
            labels=["org"],
        )
        spend = GaugeMetricFamily(
            "autopilot_spend_quarter",
            "Spend and reservations this quarter (the ledger the gate reads).",
            labels=["org", "segment"],
        )
        budget = GaugeMetricFamily(
            "autopilot_budget_quarter",
            "The segment's quarter budget (policy limits).",
            labels=["org", "segment"],
        )
        with Session(self.db) as session:
            rows = session.exec(
                select(Approval.org_id, func.count(), func.min(Approval.created_at))
                .where(Approval.status == "pending")
                .group_by(Approval.org_id)
            ).all()
            for org, count, first in rows:
                pending.add_metric([org], float(count))
                first = first if first.tzinfo else first.replace(tzinfo=now.tzinfo)
                oldest.add_metric([org], max(0.0, (now - first).total_seconds()))
            by_org: dict[str, list[str]] = {}
            for org, account_id in session.exec(select(Account.org_id, col(Account.id))).all():
                by_org.setdefault(org, []).append(account_id)
            try:
                limits = read_limits(self.policy).budget
            except PolicyLoadError:
                limits = {}  # no policy loaded: spend alone
            for org, ids in sorted(by_org.items()):
                spent = segment_spend(session, account_ids=ids, now=now)
                for segment in sorted(set(spent) | set(limits)):
                    spend.add_metric([org, segment], spent.get(segment, 0.0))
                    if segment in limits:
                        budget.add_metric([org, segment], limits[segment].segment_quarter_budget)
        return [pending, oldest, spend, budget]


def exposition(store: CollectorRegistry) -> bytes:
    """The text format of the process's counters and of this app's store gauges."""
    return generate_latest(REGISTRY) + generate_latest(store)


def store_registry(
    db: Engine, policy: PolicyEngine, clock: Callable[[], datetime]
) -> CollectorRegistry:
    """A registry per app (per store): two apps in one process each report their own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(db, policy, clock))
    return registry
