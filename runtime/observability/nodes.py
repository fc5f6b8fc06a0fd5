"""A span (and the log context) per graph node, as a decorator on the node functions.

Nodes that run as activities get a real span under Temporal's `RunActivity` span and
bind the run's workflow id, account and organisation for their log lines; nodes that
run in the workflow emit a zero-length span through the interceptor (replay-safe)."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlmodel import Session
from temporalio import activity, workflow

from autopilot.runtime import services
from autopilot.runtime.observability import logs
from autopilot.runtime.observability.tracing import span, workflow_span
from autopilot.runtime.store.accounts import Account

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
_orgs: dict[str, str] = {}  # account -> organisation (an account never changes organisation)


def _org(account_id: str) -> str | None:
    if account_id in _orgs or not activity.in_activity():
        return _orgs.get(account_id)
    with Session(services.current().db) as session:
        row = session.get(Account, account_id)
    if row is not None:
        if len(_orgs) > 100_000:
            _orgs.clear()
        _orgs[account_id] = row.org_id
        return row.org_id
    return None


def _run(state: dict[str, Any]) -> dict[str, Any]:
    run = state.get("run") or {}
    account = str(run.get("account_id", "")) or None
    return {
        "workflow_id": run.get("workflow_id"),
        "agent": run.get("agent"),
        "account": account,
    }


def traced_node(fn: F) -> F:
    """Wrap a node (sync or async); its name is the node's (`node.<function name>`)."""
    name = f"node.{fn.__name__}"

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(state: Any, *args: Any, **kwargs: Any) -> Any:
            if workflow.in_workflow():
                workflow_span(name, **_run(state))
                return await fn(state, *args, **kwargs)
            attrs = _run(state)
            org = _org(attrs["account"]) if attrs["account"] else None
            with (
                logs.bound(workflow_id=attrs["workflow_id"], account=attrs["account"], org=org),
                span(name, org=org, **attrs),
            ):
                out = await fn(state, *args, **kwargs)
                log.debug("%s finished", name, extra={"agent": attrs["agent"]})
                return out

        return run_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def run_sync(state: Any, *args: Any, **kwargs: Any) -> Any:
        if workflow.in_workflow():
            workflow_span(name, **_run(state))
            return fn(state, *args, **kwargs)
        attrs = _run(state)
        org = _org(attrs["account"]) if attrs["account"] else None
        with (
            logs.bound(workflow_id=attrs["workflow_id"], account=attrs["account"], org=org),
            span(name, org=org, **attrs),
        ):
            out = fn(state, *args, **kwargs)
            log.debug("%s finished", name, extra={"agent": attrs["agent"]})
            return out

    return run_sync  # type: ignore[return-value]
