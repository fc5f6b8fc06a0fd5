"""Run a tool call at most once per idempotency key; a repeat returns the stored result.

The key is reserved (status `started`) before the side effect and closed (`done`)
after it, in separate commits. A retry that finds `done` replays the stored output;
one that finds `started` means an earlier attempt died mid-effect, and we refuse to
guess (ToolOutcomeUnknown) rather than risk a second email."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from autopilot.runtime.contracts.tool import ToolCall, ToolResult
from autopilot.runtime.policy.limits import PolicyLimits
from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.tools.registry import (
    Registry,
    SmtpConfig,
    ToolContext,
    ToolError,
    ToolNotGranted,
    ToolOutcomeUnknown,
)


def _reserve(engine: Engine, call: ToolCall) -> ToolResult | None:
    """Returns the stored result when the call already completed, else reserves the key."""
    try:
        with transaction(engine) as session:
            row = session.get(ToolCallRecord, call.idempotency_key)
            if row is not None and row.status == "done":
                return ToolResult(
                    tool=row.tool,
                    idempotency_key=row.idempotency_key,
                    status="done",
                    output=row.output,
                    replayed=True,
                )
            if row is not None and row.status == "started":
                raise ToolOutcomeUnknown(
                    f"an earlier attempt of {call.idempotency_key} started and never finished"
                )
            if row is None:
                session.add(
                    ToolCallRecord(
                        idempotency_key=call.idempotency_key,
                        tool=call.tool,
                        args=call.args,
                        status="started",
                        started_at=datetime.now(UTC),
                    )
                )
            else:  # failed before any effect: try again
                row.status, row.attempts, row.error = "started", row.attempts + 1, None
                session.add(row)
    except IntegrityError as err:  # a concurrent attempt holds the key
        raise ToolOutcomeUnknown(f"{call.idempotency_key} is being executed elsewhere") from err
    return None


def _close(
    engine: Engine, key: str, *, status: str, output: dict | None = None, error: str | None = None
) -> None:
    with transaction(engine) as session:
        row = session.get(ToolCallRecord, key)
        assert row is not None
        row.status, row.output, row.error = status, output or {}, error
        row.finished_at = datetime.now(UTC)
        session.add(row)


def execute_once(
    engine: Engine,
    registry: Registry,
    call: ToolCall,
    smtp: SmtpConfig | None,
    settings: Any = None,
    limits: PolicyLimits | None = None,
) -> ToolResult:
    if call.tool not in call.granted:
        raise ToolNotGranted(f"tool '{call.tool}' is not granted to this agent")
    tool_def = registry.get(call.tool)
    ctx = ToolContext(
        idempotency_key=call.idempotency_key,
        dry_run=call.dry_run,
        smtp=smtp,
        db=engine,
        settings=settings,
        limits=limits,
    )
    if call.dry_run or tool_def.effect == "read":
        output = registry.call(call.tool, call.args, ctx)
        return ToolResult(
            tool=call.tool,
            idempotency_key=call.idempotency_key,
            status="dry_run" if call.dry_run else "done",
            output=output,
        )
    stored = _reserve(engine, call)
    if stored is not None:
        return stored
    try:
        output = registry.call(call.tool, call.args, ctx)
    except (ToolError, OSError) as err:
        # The tool raised before completing its effect (refused, connection failed):
        # release the key so a retry may try again.
        _close(engine, call.idempotency_key, status="failed", error=str(err)[:500])
        raise
    _close(engine, call.idempotency_key, status="done", output=output)
    return ToolResult(
        tool=call.tool, idempotency_key=call.idempotency_key, status="done", output=output
    )
