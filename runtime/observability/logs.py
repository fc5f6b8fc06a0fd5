"""Structured logs: one JSON object per line carrying the run's workflow id, account and
organisation, so one run's lines can be found among many workers'.

The three fields come from context variables that the graph nodes (and anything else
working for one run) bind with `bound(...)`; inside a Temporal activity with nothing
bound, the workflow id comes from the activity's info. Every line has all three keys
(null when unknown), so a log query never needs to test for a key."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from opentelemetry import trace
from temporalio import activity

from autopilot.runtime.config import Settings
from autopilot.runtime.privacy.redact import RedactingFilter, RedactionRules

WORKFLOW_ID: ContextVar[str | None] = ContextVar("autopilot_workflow_id", default=None)
ACCOUNT: ContextVar[str | None] = ContextVar("autopilot_account", default=None)
ORG: ContextVar[str | None] = ContextVar("autopilot_org", default=None)

# LogRecord attributes that are not a caller's `extra`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


@contextmanager
def bound(
    *, workflow_id: str | None = None, account: str | None = None, org: str | None = None
) -> Iterator[None]:
    """Log lines within the block carry these (unset ones keep the outer values)."""
    tokens = [
        (var, var.set(value))
        for var, value in ((WORKFLOW_ID, workflow_id), (ACCOUNT, account), (ORG, org))
        if value is not None
    ]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def context() -> dict[str, str | None]:
    workflow_id = WORKFLOW_ID.get()
    if workflow_id is None and activity.in_activity():
        workflow_id = activity.info().workflow_id
    return {"workflow_id": workflow_id, "account": ACCOUNT.get(), "org": ORG.get()}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the run's context, the
    trace and span ids (when a span is recording), the caller's `extra`, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **context(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = format(span.trace_id, "032x")
            line["span_id"] = format(span.span_id, "016x")
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(settings: Settings, *, stream: object = None) -> logging.Handler:
    """The root logger's handler in the settings' format (`text` or `json`); replaces
    the one an earlier call installed."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_autopilot", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler._autopilot = True  # type: ignore[attr-defined]
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # Personal data (emails, phone numbers, names in personal fields) never reaches a log.
    handler.addFilter(RedactingFilter(RedactionRules.from_settings(settings)))
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    # A line per HTTP request of our own clients is noise at INFO, not an event.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    return handler
