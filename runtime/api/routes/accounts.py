from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query
from sqlmodel import Session, col, select

from autopilot.runtime.accounts.views import account_view
from autopilot.runtime.api.deps import CurrentUser, ServicesDep
from autopilot.runtime.api.routes.errors import errors
from autopilot.runtime.approvals.access import accounts_visible_to
from autopilot.runtime.ledger.cbr import cbr, period
from autopilot.runtime.policy.limits import read_limits
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import RiskAlert

router = APIRouter(tags=["accounts"])


@router.get("/accounts/{account_id}", responses=errors(401, 404, 422))
def get_account(account_id: str, user: CurrentUser, svc: ServicesDep) -> dict[str, Any]:
    """The account, Health 2.0 with every factor's signed contribution (baseline +
    contributions = health), expansion/adoption/risk signals, the latest early-warning
    alert and the optimizer's cheapest plan with its alternatives."""
    now = svc.clock()
    with Session(svc.db) as session:
        account = session.exec(
            accounts_visible_to(user, select(Account).where(Account.id == account_id))
        ).first()
        if account is None:
            raise HTTPException(404, detail=f"no account {account_id}")
        return account_view(session, account, read_limits(svc.policy), today=now.date(), now=now)


@router.get("/alerts", responses=errors(401, 422))
def list_alerts(
    user: CurrentUser,
    svc: ServicesDep,
    hours: float = Query(24 * 7, gt=0, le=24 * 366),
    limit: int = Query(100, ge=1, le=1000),
) -> list[dict[str, Any]]:
    """Early warnings (churn risk crossed the model's threshold) on the accounts you may see,
    newest first, with their reasons."""
    since = svc.clock() - timedelta(hours=hours)
    visible = accounts_visible_to(user, select(Account.id))
    with Session(svc.db) as session:
        rows = session.exec(
            select(RiskAlert)
            .where(
                RiskAlert.org_id == user.org_id,
                RiskAlert.at >= since,
                col(RiskAlert.account_id).in_(visible),
            )
            .order_by(col(RiskAlert.at).desc())
            .limit(limit)
        ).all()
    return [r.model_dump(mode="json") for r in rows]


@router.get("/metrics/cbr", responses=errors(401, 403, 422))
def get_cbr(
    user: CurrentUser,
    svc: ServicesDep,
    by: Literal["segment", "agent", "playbook", "account"] = "segment",
    days: int | None = Query(None, ge=1, le=3650),
) -> dict[str, Any]:
    """Cost to retain = (CS labour + support + education + cloud + discount + incentives)
    / retained ARR, this quarter so far (or over the last `days` days), by slice."""
    if user.book_only:
        raise HTTPException(
            403, detail="cost to retain is for managers, finance, VPs, admins and auditors"
        )
    since, until = period(svc.clock(), days)
    with Session(svc.db) as session:
        rows = cbr(session, org_id=user.org_id, by=by, since=since, until=until)
    return {
        "by": by,
        "since": since.astimezone(UTC).isoformat(),
        "until": until.astimezone(UTC).isoformat(),
        "rows": rows,
        "generated_at": datetime.now(UTC).isoformat(),
    }
