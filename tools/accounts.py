"""Read tools over account intelligence: Health 2.0 with its explanation, signals,
and the Cost-to-Retain Optimizer's options. Outputs are data: they grant nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlmodel import Session

from autopilot.runtime.accounts.views import account_view
from autopilot.runtime.config import get_settings
from autopilot.runtime.health.scoring import current as current_health
from autopilot.runtime.kb.store import ensure_shipped, search
from autopilot.runtime.ledger.spend import quarter_limits
from autopilot.runtime.optimizer.solver import Goal, optimize
from autopilot.runtime.optimizer.uplift import learned_uplift
from autopilot.runtime.policy.limits import PolicyLimits
from autopilot.runtime.store.accounts import Account
from autopilot.tools.registry import ToolContext, ToolError, tool


class AccountArgs(BaseModel):
    account_id: str = Field(min_length=1, max_length=64)


class OptimizeArgs(AccountArgs):
    goal: Literal["retention", "adoption"] = "retention"
    target: float = Field(
        0.8, ge=0, le=1, description="renewal probability to keep, or adoption to reach"
    )
    current_adoption: float | None = Field(
        None, ge=0, le=1, description="adoption now (adoption goals)"
    )


class AccountIntel(BaseModel):
    account_id: str
    data: dict[str, Any]


def _with_account(args: AccountArgs, ctx: ToolContext, fn: Any) -> Any:
    """`fn(session, account, now)` on the account the arguments name."""
    if ctx.db is None:
        raise ToolError("no store configured for account tools")
    now = datetime.now(UTC)
    with Session(ctx.db) as session:
        account = session.get(Account, args.account_id)
        if account is None:
            raise ToolError(f"no account {args.account_id}")
        return fn(session, account, now)


def _limits(ctx: ToolContext) -> PolicyLimits:
    if ctx.limits is None:
        raise ToolError("no policy limits in this context (the worker passes the active bundle's)")
    return ctx.limits


def _view(args: AccountArgs, ctx: ToolContext) -> dict[str, Any]:
    return _with_account(
        args, ctx, lambda s, a, now: account_view(s, a, _limits(ctx), today=now.date(), now=now)
    )


@tool(scopes=["accounts:read"], effect="read", kind="read")
def account_health(args: AccountArgs, ctx: ToolContext) -> AccountIntel:
    """Health 2.0 of an account: score, churn risk and every factor's signed contribution."""
    return AccountIntel(account_id=args.account_id, data=_view(args, ctx)["health"])


@tool(scopes=["accounts:read"], effect="read", kind="read")
def account_signals(args: AccountArgs, ctx: ToolContext) -> AccountIntel:
    """Expansion, adoption and risk signals of an account, and its latest early-warning alert."""
    view = _view(args, ctx)
    return AccountIntel(
        account_id=args.account_id, data={"signals": view["signals"], "alert": view["alert"]}
    )


@tool(scopes=["accounts:read", "optimizer:read"], effect="read", kind="read")
def optimizer_options(args: OptimizeArgs, ctx: ToolContext) -> AccountIntel:
    """The cheapest set of actions that reaches the goal within budget and contact limits,
    each option's marginal cost and success probability, and the runners-up."""

    def run(session: Session, account: Any, now: datetime) -> Any:
        if args.goal == "retention":
            current = current_health(session, account, today=now.date()).risk
        elif args.current_adoption is None:
            raise ToolError("an adoption goal needs current_adoption")
        else:
            current = args.current_adoption
        return optimize(
            Goal(kind=args.goal, target=args.target, current=current),
            quarter_limits(session, account, _limits(ctx), now=now),
            segment=account.segment,
            arr=account.arr,
            learned=learned_uplift(session, account),
        )

    result = _with_account(args, ctx, run)
    return AccountIntel(account_id=args.account_id, data=result.model_dump(mode="json"))


class KnowledgeArgs(BaseModel):
    query: str = Field(min_length=2, max_length=500)
    k: int = Field(3, ge=1, le=10)


class KnowledgeHits(BaseModel):
    query: str
    hits: list[dict[str, Any]]  # text, source, heading, score: data to read, never instructions


@tool(scopes=["kb:read"], effect="read", kind="read")
def knowledge_search(args: KnowledgeArgs, ctx: ToolContext) -> KnowledgeHits:
    """Search the playbooks and help articles; the best passages with their source and heading."""
    settings = ctx.settings or get_settings()
    ensure_shipped(settings)  # an empty knowledge base starts with the shipped articles
    return KnowledgeHits(query=args.query, hits=search(settings, args.query, args.k))
