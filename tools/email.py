"""Email tools: a rescue email and a renewal offer, delivered over SMTP.

The Message-ID is derived from the idempotency key, so a receiving system can
de-duplicate too; the executor makes sure we never hand it a second copy."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formatdate

from pydantic import BaseModel, Field

from autopilot.runtime.hashing import sha256_hex
from autopilot.tools.registry import SmtpConfig, ToolContext, ToolError, tool


class SendEmailArgs(BaseModel):
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1)


class SendOfferArgs(BaseModel):
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    account_name: str
    discount_pct: float = Field(ge=0, le=100)
    valid_days: int = Field(30, ge=1, le=90)
    term_months: int = Field(12, ge=1, le=60)


class EmailSent(BaseModel):
    message_id: str
    to: str
    subject: str
    delivered: bool
    preview: str


def _message(ctx: ToolContext, to: str, subject: str, body: str) -> EmailMessage:
    if ctx.smtp is None:
        raise ToolError("no SMTP server configured")
    msg = EmailMessage()
    msg["From"] = ctx.smtp.mail_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<{sha256_hex(ctx.idempotency_key)[:32]}@cs-autopilot>"
    msg["X-Idempotency-Key"] = ctx.idempotency_key
    msg.set_content(body)
    return msg


def smtp_send(config: SmtpConfig, msg: EmailMessage) -> None:
    """Hand one message to the configured SMTP server (STARTTLS and auth by settings)."""
    with smtplib.SMTP(config.host, config.port, timeout=10) as smtp:
        if config.starttls:
            smtp.starttls()
        if config.username:
            smtp.login(config.username, config.password)
        smtp.send_message(msg)


def _deliver(ctx: ToolContext, msg: EmailMessage) -> EmailSent:
    assert ctx.smtp is not None
    result = EmailSent(message_id=msg["Message-ID"], to=msg["To"], subject=msg["Subject"],
                       delivered=False, preview=msg.as_string())
    if ctx.dry_run:
        return result
    try:
        smtp_send(ctx.smtp, msg)
    except smtplib.SMTPRecipientsRefused as err:
        raise ToolError(f"recipient refused: {err.recipients}") from err
    return result.model_copy(update={"delivered": True})


@tool(scopes=["email:send"], effect="external", kind="email", cost=0.5, irreversible=True)
def send_email(args: SendEmailArgs, ctx: ToolContext) -> EmailSent:
    """Send a plain-text email to one contact of the account."""
    return _deliver(ctx, _message(ctx, args.to, args.subject, args.body))


@tool(scopes=["email:send", "offer:create"], effect="external", kind="offer", cost=2.0, significant=True,
      irreversible=True)
def send_offer(args: SendOfferArgs, ctx: ToolContext) -> EmailSent:
    """Email a renewal offer with a discount, valid for a number of days."""
    body = (
        f"Hello,\n\nas a thank-you for your partnership, {args.account_name} can renew with a "
        f"{args.discount_pct:g}% discount on a {args.term_months}-month term. The offer is valid for "
        f"{args.valid_days} days; "
        "reply to this email and your CSM will prepare the paperwork.\n"
    )
    subject = f"Your renewal offer: {args.discount_pct:g}% off"
    return _deliver(ctx, _message(ctx, args.to, subject, body))
