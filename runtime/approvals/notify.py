"""Notifications: escalations and a digest of pending items per approver, by email
(SMTP) and to a Slack-compatible incoming webhook."""

from __future__ import annotations

import logging
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import httpx
from sqlmodel import Session, col, select

from autopilot.runtime.approvals.access import (
    Principal,
    accounts_visible_to,
    approvals_visible_to,
    role_to_cast,
)
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.services import Services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.approvals import Approval, ApprovalVote
from autopilot.runtime.store.customer import RiskAlert
from autopilot.runtime.store.users import User
from autopilot.tools.email import smtp_send
from autopilot.tools.errors import ToolError

log = logging.getLogger(__name__)


def _mail(svc: Services, to: str, subject: str, body: str, key: str) -> bool:
    if svc.smtp is None:
        return False
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = svc.smtp.mail_from, to, subject
    msg["Message-ID"] = f"<{sha256_hex(key)[:32]}@cs-autopilot>"  # a resend is recognisable
    msg.set_content(body)
    try:
        smtp_send(svc.smtp, msg)
        return True
    except ToolError as err:
        log.warning("notification mail to %s failed: %s", to, err)
        return False


def _webhook(svc: Services, payload: dict[str, Any]) -> bool:
    url = svc.settings.slack_webhook_url
    if not url:
        return False
    try:
        httpx.post(url, json=payload, timeout=5).raise_for_status()
        return True
    except httpx.HTTPError as err:
        log.warning("notification webhook failed: %s", err)
        return False


def notify_escalation(svc: Services, *, approval_id: str, role: str, to: str) -> int:
    with Session(svc.db) as session:
        item = session.get(Approval, approval_id)
        if item is None:
            return 0
        users = [
            u
            for u in session.exec(
                select(User).where(User.org_id == item.org_id, User.active == True)
            )
            if to in u.roles
        ]
    text = (
        f"Escalated to {to}: {item.tool} for {item.account_id} has waited past the {role} SLA. "
        f"Reasons: {'; '.join(item.reasons)}"
    )
    sent = sum(
        _mail(
            svc,
            u.email,
            f"[CS Autopilot] escalated: {item.tool} on {item.account_id}",
            text,
            f"escalation/{approval_id}/{role}/{u.id}",
        )
        for u in users
    )
    _webhook(svc, {"text": text, "approval_id": approval_id, "escalated_role": role, "to": to})
    return sent


def send_digest(svc: Services, *, org_id: str) -> dict[str, int]:
    """One message per approver listing the pending items they may decide now."""
    per_user: dict[str, int] = {}
    lines_all: list[str] = []
    with Session(svc.db) as session:
        users = session.exec(select(User).where(User.org_id == org_id, User.active == True)).all()
        for user in users:
            p = Principal(user_id=user.id, org_id=org_id, roles=frozenset(user.roles))
            if not p.can_decide:
                continue
            items = session.exec(
                approvals_visible_to(p, select(Approval).where(Approval.status == "pending"))
            ).all()
            mine = []
            for item in items:
                voted = {
                    v.role
                    for v in session.exec(
                        select(ApprovalVote).where(ApprovalVote.approval_id == item.id)
                    )
                }
                if role_to_cast(p, item, voted):
                    mine.append(item)
            if not mine:
                continue
            lines = [
                f"- {i.tool} on {i.account_id} ({i.segment}), value {i.value:,.0f}: {'; '.join(i.reasons)}"
                for i in mine
            ]
            _mail(
                svc,
                user.email,
                f"[CS Autopilot] {len(mine)} action(s) wait for you",
                "\n".join(lines),
                f"digest/{user.id}/{sha256_hex([i.id for i in mine])}",
            )
            per_user[user.id] = len(mine)
            lines_all.append(f"{user.name}: {len(mine)} pending")
    if per_user:
        _webhook(svc, {"text": "Pending approvals\n" + "\n".join(lines_all), "per_user": per_user})
    return per_user


def send_alert_digest(svc: Services, *, org_id: str, since: datetime) -> dict[str, int]:
    """Early warnings raised since `since`, to each CSM for their book (and to managers
    for the organisation), by email and to the webhook."""
    per_user: dict[str, int] = {}
    with Session(svc.db) as session:
        users = session.exec(select(User).where(User.org_id == org_id, User.active == True)).all()
        for user in users:
            p = Principal(user_id=user.id, org_id=org_id, roles=frozenset(user.roles))
            if not (p.roles & {"csm", "manager", "vp"}):
                continue
            visible = accounts_visible_to(p, select(Account.id))
            alerts = session.exec(
                select(RiskAlert)
                .where(
                    RiskAlert.org_id == org_id,
                    RiskAlert.at >= since,
                    col(RiskAlert.account_id).in_(visible),
                )
                .order_by(col(RiskAlert.risk).desc())
            ).all()
            if not alerts:
                continue
            lines = [
                f"- {a.account_id}: churn risk {a.risk:.0%} (threshold {a.threshold:.0%}); "
                f"{'; '.join(a.reasons) or 'see the account'}"
                for a in alerts
            ]
            _mail(
                svc,
                user.email,
                f"[CS Autopilot] {len(alerts)} early warning(s) on your accounts",
                "\n".join(lines),
                f"alerts/{user.id}/{sha256_hex([a.id for a in alerts])}",
            )
            per_user[user.id] = len(alerts)
    if per_user:
        _webhook(
            svc, {"text": f"Early warnings since {since:%Y-%m-%d %H:%M}", "per_user": per_user}
        )
    return per_user
