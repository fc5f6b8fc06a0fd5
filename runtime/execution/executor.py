"""Run a tool call at most once per idempotency key, and know how every call ended.

The key is reserved (`started`) before the side effect and closed after it, in separate
commits. Each call ends in one of three states:
- `done`: it happened once; a repeat returns the stored output and does nothing.
- `failed`: known not to have happened (refused, receiver not reached, "try later"); a
  retry may try again.
- `unknown`: handed over with no answer, or an earlier attempt died mid-call. A tool whose
  receiver de-duplicates by the key (the CRM's Idempotency-Key) is asked again with the
  same key (`reconciling`); any other is never repeated blindly: it waits for a person
  (runtime/execution/outcomes.py) or for the receiver's word."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from autopilot.runtime.contracts.tool import ToolCall, ToolResult
from autopilot.runtime.observability.metrics import TOOL_CALLS, TOOL_ERRORS
from autopilot.runtime.observability.tracing import set_attrs, span
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
    ToolUnavailable,
)

DIED = "an earlier attempt started the call and never recorded its end"


def _stored(row: ToolCallRecord) -> ToolResult:
    return ToolResult(
        tool=row.tool,
        idempotency_key=row.idempotency_key,
        status="done",
        output=row.output,
        replayed=True,
    )


def _reserve(engine: Engine, call: ToolCall, *, dedup: bool) -> tuple[ToolResult | None, bool]:
    """The stored result when the call already completed; else reserves the key and says
    whether this attempt reconciles an unknown outcome. Raises ToolOutcomeUnknown when the
    outcome is unknown and the receiver cannot be asked again safely."""
    unknown: str | None = None
    now = datetime.now(UTC)
    try:
        with transaction(engine) as session:
            row = session.get(ToolCallRecord, call.idempotency_key)
            if row is not None and row.status == "done":
                return _stored(row), False
            if row is None:
                session.add(
                    ToolCallRecord(
                        idempotency_key=call.idempotency_key,
                        tool=call.tool,
                        args=call.args,
                        status="started",
                        started_at=now,
                    )
                )
            elif row.status in ("started", "unknown", "reconciling"):
                if dedup:  # the receiver answers a repeat with what it did the first time
                    row.status, row.attempts = "reconciling", row.attempts + 1
                else:
                    if row.status != "unknown":  # the attempt that started it died mid-call
                        row.status, row.error, row.finished_at = "unknown", DIED, now
                    unknown = row.error or DIED
                session.add(row)
            else:  # failed: known not sent, so it may be tried again
                row.status, row.attempts, row.error = "started", row.attempts + 1, None
                session.add(row)
    except IntegrityError as err:  # a concurrent attempt reserved the key first
        raise ToolOutcomeUnknown(f"{call.idempotency_key} is being executed elsewhere") from err
    if unknown is not None:
        raise ToolOutcomeUnknown(unknown)
    return None, row is not None and row.status == "reconciling"


def _close(
    engine: Engine, key: str, *, status: str, output: dict | None = None, error: str | None = None
) -> None:
    """The call's end, in one UPDATE (the row was reserved before the call)."""
    values = {
        "b_status": status,
        "b_output": output or {},
        "b_error": error,
        "b_at": datetime.now(UTC),
    }
    with transaction(engine) as session:
        closed = session.connection().execute(_CLOSE, {"k": key, **values}).rowcount
    assert closed == 1, f"no reserved call {key}"


_T: Any = ToolCallRecord.__table__.c  # pyright: ignore[reportAttributeAccessIssue]
_CLOSE = (
    update(ToolCallRecord)
    .where(_T.idempotency_key == bindparam("k"))
    .values(
        status=bindparam("b_status"),
        output=bindparam("b_output", type_=_T.output.type),
        error=bindparam("b_error"),
        finished_at=bindparam("b_at", type_=_T.finished_at.type),
    )
)


def call_state(engine: Engine, key: str) -> ToolCallRecord | None:
    with transaction(engine) as session:
        return session.get(ToolCallRecord, key)


def execute_once(
    engine: Engine,
    registry: Registry,
    call: ToolCall,
    smtp: SmtpConfig | None,
    settings: Any = None,
    limits: PolicyLimits | None = None,
) -> ToolResult:
    """Run `call` once. Raises ToolUnavailable (known not sent: retry later),
    ToolOutcomeUnknown (may have happened: do not repeat, unless the tool's receiver
    de-duplicates by key) or ToolError (refused: known not sent, final).
    Traced (`tool.call`, with the key and how it ended) and counted."""
    with span("tool.call", tool=call.tool, idempotency_key=call.idempotency_key) as current:
        try:
            result = _execute_once(engine, registry, call, smtp, settings, limits)
        except ToolError as err:
            outcome = "unknown" if isinstance(err, ToolOutcomeUnknown) else "failed"
            set_attrs(current, **{"tool.outcome": outcome, "tool.error_code": err.code})
            TOOL_CALLS.labels(call.tool, outcome).inc()
            TOOL_ERRORS.labels(call.tool, err.code).inc()
            raise
        outcome = "replayed" if result.replayed else result.status
        set_attrs(current, **{"tool.outcome": outcome})
        TOOL_CALLS.labels(call.tool, outcome).inc()
        return result


def _execute_once(
    engine: Engine,
    registry: Registry,
    call: ToolCall,
    smtp: SmtpConfig | None,
    settings: Any,
    limits: PolicyLimits | None,
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
    stored, reconciling = _reserve(engine, call, dedup=tool_def.dedup_by_key)
    if stored is not None:
        return stored
    # After an unknown outcome, even a refusal does not prove the first attempt failed.
    not_sent = "unknown" if reconciling else "failed"
    key = call.idempotency_key
    try:
        output = registry.call(call.tool, call.args, ctx)
    except ToolOutcomeUnknown as err:
        _close(engine, key, status="unknown", error=str(err)[:500])
        raise
    except ToolError as err:  # refused or not reached: the effect did not happen
        _close(engine, key, status=not_sent, error=f"{err.code}: {str(err)[:480]}")
        raise
    except Exception as err:
        # Anything else (a tool's own OSError, a bug) may have struck after the effect.
        _close(engine, key, status="unknown", error=f"{type(err).__name__}: {str(err)[:480]}")
        raise ToolOutcomeUnknown(f"{call.tool} raised {type(err).__name__}: {err}") from err
    _close(engine, key, status="done", output=output)
    return ToolResult(tool=call.tool, idempotency_key=key, status="done", output=output)


__all__ = ["ToolOutcomeUnknown", "ToolUnavailable", "call_state", "execute_once"]
