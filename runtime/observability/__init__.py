"""Observability: OpenTelemetry traces (API → workflow → nodes → gate → tool), Prometheus
metrics served at `GET /metrics`, and JSON logs that carry the run's workflow id, account
and organisation. Everything is off or cheap by default: no exporter, no spans recorded."""

from __future__ import annotations

from prometheus_client import start_http_server

from autopilot.runtime.config import Settings
from autopilot.runtime.observability import logs, tracing
from autopilot.runtime.observability.metrics import REGISTRY


def serve_worker_metrics(settings: Settings) -> None:
    """A worker process without the API: its logs and traces as the settings say, and
    its counters at `http://127.0.0.1:<worker_metrics_port>/metrics` when a port is set."""
    logs.configure(settings)
    tracing.configure(settings)
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr="127.0.0.1", registry=REGISTRY)
