"""Connectors with a compensating tool each, or declared irreversible: in-app
messages (an outbox table the product's app reads), CSM tasks, CRM field updates over
HTTP JSON (Idempotency-Key header), a Slack-compatible incoming webhook. Every one
has a dry run that shows exactly what it would do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field
from sqlmodel import Session

from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.store.outbox import CsmTask, InAppMessage
from autopilot.tools.registry import (
    ToolContext,
    ToolError,
    ToolOutcomeUnknown,
    ToolUnavailable,
    tool,
)


def _id(prefix: str, ctx: ToolContext) -> str:
    return f"{prefix}_{sha256_hex(ctx.idempotency_key)[:20]}"


def _http_error(err: httpx.HTTPError, what: str) -> ToolError:
    """What a failed HTTP call means for the effect: not reached or "try later" (429, 5xx)
    is known not done; a timeout or a dropped connection after the request left may have
    been applied; any other 4xx is final."""
    if isinstance(err, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return ToolUnavailable(f"{what}: {err}")
    if isinstance(err, httpx.HTTPStatusError):
        code = err.response.status_code
        if code == 429 or code >= 500:
            return ToolUnavailable(f"{what}: HTTP {code}")
        return ToolError(f"{what}: HTTP {code}")
    return ToolOutcomeUnknown(f"{what}: no answer after the request left: {err}")


def _timeout(ctx: ToolContext) -> float:
    return float(getattr(ctx.settings, "http_timeout_s", 10.0)) if ctx.settings else 10.0


def _db(ctx: ToolContext):  # type: ignore[no-untyped-def]
    if ctx.db is None:
        raise ToolError("no store configured")
    return ctx.db


class Done(BaseModel):
    id: str
    status: str
    dry_run: bool = False
    preview: dict[str, Any] = {}
    undo: dict[str, Any] = {}  # the arguments of the compensating tool


# --- in-app messages ------------------------------------------------------------


class InAppArgs(BaseModel):
    account_id: str = Field(min_length=1)
    audience: Literal["admin", "champion", "executive_sponsor", "end_user", "all"] = "all"
    title: str = Field(min_length=1, max_length=120)
    body: str = Field(min_length=1, max_length=2000)
    delay_minutes: int = Field(0, ge=0, le=7 * 24 * 60)


class CancelArgs(BaseModel):
    id: str = Field(min_length=1)


@tool(
    scopes=["in_app:send"],
    effect="write",
    kind="in_app",
    cost=0.2,
    compensate="cancel_in_app_message",
    dedup_by_key=True,
)
def send_in_app_message(args: InAppArgs, ctx: ToolContext) -> Done:
    """Schedule an in-app message for an account's users (the app reads the outbox)."""
    now = datetime.now(UTC)
    msg_id = _id("iam", ctx)
    preview = {
        "table": "inappmessage",
        "id": msg_id,
        **args.model_dump(),
        "deliver_at": (now + timedelta(minutes=args.delay_minutes)).isoformat(),
    }
    if ctx.dry_run:
        return Done(
            id=msg_id, status="would_schedule", dry_run=True, preview=preview, undo={"id": msg_id}
        )
    with Session(_db(ctx)) as s:
        if s.get(InAppMessage, msg_id) is None:  # the key makes a retry a no-op
            s.add(
                InAppMessage(
                    id=msg_id,
                    account_id=args.account_id,
                    audience=args.audience,
                    title=args.title,
                    body=args.body,
                    deliver_at=now + timedelta(minutes=args.delay_minutes),
                    created_at=now,
                )
            )
            s.commit()
    return Done(id=msg_id, status="scheduled", preview=preview, undo={"id": msg_id})


def _cancel(
    ctx: ToolContext, model: Any, row_id: str, *, what: str, final: str | None = None
) -> Done:
    """Set an outbox row to cancelled (a dry run says what would change); a row already
    `final` (delivered) cannot be recalled."""
    with Session(_db(ctx)) as s:
        row = s.get(model, row_id)
        if row is None:
            raise ToolError(f"no {what} {row_id}")
        if final and row.status == final:
            raise ToolError(f"{what} {row_id} was already {final}: it cannot be recalled")
        if ctx.dry_run:
            return Done(
                id=row_id,
                status="would_cancel",
                dry_run=True,
                preview={"from": row.status, "to": "cancelled"},
            )
        row.status = "cancelled"
        s.add(row)
        s.commit()
    return Done(id=row_id, status="cancelled")


@tool(scopes=["in_app:send"], effect="write", kind="compensation", cost=0.0, dedup_by_key=True)
def cancel_in_app_message(args: CancelArgs, ctx: ToolContext) -> Done:
    """Cancel a scheduled in-app message (one already delivered cannot be recalled)."""
    return _cancel(ctx, InAppMessage, args.id, what="in-app message", final="delivered")


# --- CSM tasks ------------------------------------------------------------------


class TaskArgs(BaseModel):
    account_id: str = Field(min_length=1)
    assignee: str = Field(min_length=1)
    title: str = Field(min_length=1, max_length=200)
    detail: str = ""
    due_days: int = Field(2, ge=0, le=90)


@tool(
    scopes=["task:create"],
    effect="write",
    kind="task",
    cost=0.0,
    compensate="cancel_csm_task",
    dedup_by_key=True,
)
def create_csm_task(args: TaskArgs, ctx: ToolContext) -> Done:
    """Create a task for a CSM (a call to make, a follow-up)."""
    now = datetime.now(UTC)
    task_id = _id("task", ctx)
    preview = {
        "table": "csmtask",
        "id": task_id,
        **args.model_dump(),
        "due": (now + timedelta(days=args.due_days)).isoformat(),
    }
    if ctx.dry_run:
        return Done(
            id=task_id, status="would_create", dry_run=True, preview=preview, undo={"id": task_id}
        )
    with Session(_db(ctx)) as s:
        if s.get(CsmTask, task_id) is None:
            s.add(
                CsmTask(
                    id=task_id,
                    account_id=args.account_id,
                    assignee=args.assignee,
                    title=args.title,
                    detail=args.detail,
                    due=now + timedelta(days=args.due_days),
                    created_at=now,
                )
            )
            s.commit()
    return Done(id=task_id, status="open", preview=preview, undo={"id": task_id})


@tool(scopes=["task:create"], effect="write", kind="compensation", cost=0.0, dedup_by_key=True)
def cancel_csm_task(args: CancelArgs, ctx: ToolContext) -> Done:
    """Cancel an open CSM task."""
    return _cancel(ctx, CsmTask, args.id, what="task", final="done")


# --- CRM over HTTP JSON ---------------------------------------------------------


class CrmFieldArgs(BaseModel):
    account_id: str = Field(min_length=1)
    field: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    value: Any = None


def _crm(ctx: ToolContext) -> tuple[str, dict[str, str]]:
    url = getattr(ctx.settings, "crm_url", "") if ctx.settings is not None else ""
    if not url:
        raise ToolError("no CRM configured (AUTOPILOT_CRM_URL)")
    token = getattr(ctx.settings, "crm_token", "")
    return url.rstrip("/"), ({"Authorization": f"Bearer {token}"} if token else {})


def _crm_set(ctx: ToolContext, args: CrmFieldArgs, *, compensation: bool) -> Done:
    base, headers = _crm(ctx)
    try:
        current = httpx.get(
            f"{base}/accounts/{args.account_id}", headers=headers, timeout=_timeout(ctx)
        )
        current.raise_for_status()
        before = current.json().get("fields", {}).get(args.field)
        diff = {
            "account_id": args.account_id,
            "field": args.field,
            "from": before,
            "to": args.value,
        }
        if ctx.dry_run:
            return Done(
                id=args.account_id,
                status="would_update",
                dry_run=True,
                preview=diff,
                undo={"account_id": args.account_id, "field": args.field, "value": before},
            )
        r = httpx.patch(
            f"{base}/accounts/{args.account_id}",
            json={"fields": {args.field: args.value}},
            timeout=_timeout(ctx),
            headers={**headers, "Idempotency-Key": ctx.idempotency_key},
        )
        r.raise_for_status()
    except httpx.HTTPError as err:
        raise _http_error(err, "CRM request failed") from err
    previous = (
        r.json().get("previous", {}).get(args.field, before)
    )  # what the CRM replaced, replay-safe
    return Done(
        id=args.account_id,
        status="reverted" if compensation else "updated",
        preview={**diff, "from": previous},
        undo={"account_id": args.account_id, "field": args.field, "value": previous},
    )


@tool(
    scopes=["crm:write"],
    effect="external",
    kind="crm_update",
    cost=0.0,
    compensate="crm_revert_field",
    dedup_by_key=True,  # the CRM honours Idempotency-Key
)
def crm_update_field(args: CrmFieldArgs, ctx: ToolContext) -> Done:
    """Set one field of an account in the CRM (the renewal forecast, a health note)."""
    return _crm_set(ctx, args, compensation=False)


@tool(scopes=["crm:write"], effect="external", kind="compensation", cost=0.0, dedup_by_key=True)
def crm_revert_field(args: CrmFieldArgs, ctx: ToolContext) -> Done:
    """Put a CRM field back to its previous value."""
    return _crm_set(ctx, args, compensation=True)


class ForecastArgs(BaseModel):
    account_id: str = Field(min_length=1)
    renewal_probability: float = Field(ge=0, le=1)
    forecast_arr: float = Field(ge=0)


class ForecastRestoreArgs(BaseModel):
    account_id: str = Field(min_length=1)
    previous: dict[str, float] | None = None  # the forecast to put back; none = remove ours


@tool(
    scopes=["crm:write"],
    effect="external",
    kind="crm_update",
    cost=0.0,
    compensate="crm_restore_forecast",
    dedup_by_key=True,
)
def crm_write_forecast(args: ForecastArgs, ctx: ToolContext) -> Done:
    """Write the renewal forecast (probability and ARR) back to the CRM, where finance reads it."""
    base, headers = _crm(ctx)
    body = {"renewal_probability": args.renewal_probability, "forecast_arr": args.forecast_arr}
    try:
        current = httpx.get(
            f"{base}/accounts/{args.account_id}", headers=headers, timeout=_timeout(ctx)
        )
        current.raise_for_status()
        before = current.json().get("forecast")
        if ctx.dry_run:
            return Done(
                id=args.account_id,
                status="would_write",
                dry_run=True,
                preview={"from": before, "to": body},
                undo={"account_id": args.account_id, "previous": before},
            )
        r = httpx.put(
            f"{base}/accounts/{args.account_id}/forecast",
            json=body,
            timeout=_timeout(ctx),
            headers={**headers, "Idempotency-Key": ctx.idempotency_key},
        )
        r.raise_for_status()
    except httpx.HTTPError as err:
        raise _http_error(err, "CRM request failed") from err
    previous = r.json().get("previous")
    return Done(
        id=args.account_id,
        status="written",
        preview={"from": previous, "to": body},
        undo={"account_id": args.account_id, "previous": previous},
    )


@tool(scopes=["crm:write"], effect="external", kind="compensation", cost=0.0, dedup_by_key=True)
def crm_restore_forecast(args: ForecastRestoreArgs, ctx: ToolContext) -> Done:
    """Put the CRM's renewal forecast back as it was before this product wrote it."""
    base, headers = _crm(ctx)
    if ctx.dry_run:
        return Done(
            id=args.account_id, status="would_restore", dry_run=True, preview={"to": args.previous}
        )
    try:
        h = {**headers, "Idempotency-Key": ctx.idempotency_key}
        if args.previous is None:
            httpx.delete(
                f"{base}/accounts/{args.account_id}/forecast", headers=h, timeout=_timeout(ctx)
            ).raise_for_status()
        else:
            httpx.put(
                f"{base}/accounts/{args.account_id}/forecast",
                json=args.previous,
                headers=h,
                timeout=_timeout(ctx),
            ).raise_for_status()
    except httpx.HTTPError as err:
        raise _http_error(err, "CRM request failed") from err
    return Done(id=args.account_id, status="restored", preview={"to": args.previous})


# --- Slack-compatible webhook ----------------------------------------------------


class SlackArgs(BaseModel):
    text: str = Field(min_length=1, max_length=4000)
    channel: str | None = None


@tool(scopes=["slack:post"], effect="external", kind="notification", cost=0.0, irreversible=True)
def post_slack(args: SlackArgs, ctx: ToolContext) -> Done:
    """Post a message to the team's Slack-compatible incoming webhook."""
    url = getattr(ctx.settings, "slack_webhook_url", "") if ctx.settings is not None else ""
    if not url:
        raise ToolError("no webhook configured (AUTOPILOT_SLACK_WEBHOOK_URL)")
    payload = {"text": args.text, **({"channel": args.channel} if args.channel else {})}
    if ctx.dry_run:
        return Done(
            id=ctx.idempotency_key,
            status="would_post",
            dry_run=True,
            preview={"url": url, "json": payload},
        )
    try:
        httpx.post(
            url,
            json=payload,
            timeout=_timeout(ctx),
            headers={"Idempotency-Key": ctx.idempotency_key},
        ).raise_for_status()
    except httpx.HTTPError as err:
        raise _http_error(err, "webhook failed") from err
    return Done(id=ctx.idempotency_key, status="posted", preview={"json": payload})
