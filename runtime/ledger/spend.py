"""What has been spent and who has been contacted: the policy's ledger input, summed
from executed actions in the store."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func
from sqlmodel import Session, select

from autopilot.runtime.contracts.policy import LedgerIn
from autopilot.runtime.store.actions import ActionRecord


def quarter_start(now: datetime) -> datetime:
    return datetime(now.year, 3 * ((now.month - 1) // 3) + 1, 1, tzinfo=UTC)


def ledger(session: Session, *, account_id: str, segment: str, now: datetime) -> LedgerIn:
    since = quarter_start(now)
    done = (ActionRecord.status == "executed", ActionRecord.updated_at >= since)
    account_spend, high_touch, discount = session.exec(
        select(func.coalesce(func.sum(ActionRecord.expected_cost), 0.0),
               func.coalesce(func.sum(ActionRecord.high_touch), 0),
               func.coalesce(func.sum(ActionRecord.discount_pct), 0.0))
        .where(ActionRecord.account_id == account_id, *done)
    ).one()
    segment_spend = session.exec(
        select(func.coalesce(func.sum(ActionRecord.expected_cost), 0.0)).where(ActionRecord.segment == segment, *done)
    ).one()
    return LedgerIn(account_spend_quarter=float(account_spend), segment_spend_quarter=float(segment_spend),
                    high_touch_contacts_quarter=int(high_touch), active_discount_pct=min(100.0, float(discount)))


def hours_since_contact(session: Session, *, recipient: str, now: datetime) -> float | None:
    last = session.exec(
        select(func.max(ActionRecord.updated_at)).where(ActionRecord.recipient == recipient,
                                                       ActionRecord.status == "executed")
    ).one()
    if last is None:
        return None
    last = last if last.tzinfo else last.replace(tzinfo=UTC)
    return round(max(0.0, (now - last).total_seconds() / 3600), 2)
