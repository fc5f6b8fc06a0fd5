"""Prometheus metrics, served by the API at `GET /metrics`.

Counters and the gate-latency histogram live in one dedicated registry (not the client
library's global one, which would also carry whatever else the process registers) and
are incremented where things happen (this module imports nothing of the runtime, so
any module may count). Figures that are state, not events, are read from the store at
scrape time: see `collector.py`."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RUNS_STARTED = Counter(
    "autopilot_runs_started",
    "Agent runs started (not continued-as-new).",
    ["agent"],
    registry=REGISTRY,
)
RUNS_FINISHED = Counter(
    "autopilot_runs_finished",
    "Agent runs finished, by outcome: completed, failed, cancelled.",
    ["agent", "outcome"],
    registry=REGISTRY,
)
DECISIONS = Counter(
    "autopilot_policy_decisions",
    "Gate decisions by outcome (allow, require_approval, deny).",
    ["agent", "outcome"],
    registry=REGISTRY,
)
DECISION_CODES = Counter(
    "autopilot_policy_decision_codes",
    "Deny and approval codes of gate decisions (a decision may carry several).",
    ["outcome", "code"],
    registry=REGISTRY,
)
GATE_LATENCY = Histogram(
    "autopilot_gate_latency_seconds",
    "The gate node: policy input, evaluation and decision log.",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
TOOL_CALLS = Counter(
    "autopilot_tool_calls", "Tool calls by outcome.", ["tool", "outcome"], registry=REGISTRY
)
TOOL_ERRORS = Counter(
    "autopilot_tool_errors",
    "Tool calls that failed, by error code.",
    ["tool", "code"],
    registry=REGISTRY,
)
EVENTS_INGESTED = Counter(
    "autopilot_events_ingested", "Events stored (API, imports, sweeps).", registry=REGISTRY
)


def decided(agent: str, outcome: str, codes: Iterable[str], seconds: float) -> None:
    DECISIONS.labels(agent, outcome).inc()
    GATE_LATENCY.labels(outcome).observe(seconds)
    for code in codes:
        DECISION_CODES.labels(outcome, code).inc()
