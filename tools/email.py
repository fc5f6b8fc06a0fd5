"""Email tools: a rescue email and a renewal offer, delivered over SMTP.

The Message-ID is derived from the idempotency key, so a receiving system can
de-duplicate too; the executor makes sure we never hand it a second copy. Every
message to a contact carries their signed unsubscribe/preferences link (RFC 8058
one-click headers and a footer), so one click stops the next automated email."""

from __future__ import annotations

import smtplib
import ssl
import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate

from icalendar import Calendar, Event, vCalAddress
from pydantic import BaseModel, Field
from sqlalchemy import bindparam, func
from sqlmodel import col, select

from autopilot.runtime.consent import tokens
from autopilot.runtime.contracts.hashing import sha256_hex
from autopilot.runtime.store.accounts import Account, Contact
from autopilot.tools.registry import (
    SmtpConfig,
    ToolContext,
    ToolError,
    ToolOutcomeUnknown,
    ToolUnavailable,
    tool,
)


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
    links = _preference_links(ctx, to)
    if links is not None:
        preferences, unsubscribe = links
        # RFC 2369 + RFC 8058: mail clients show an unsubscribe button that POSTs here.
        msg["List-Unsubscribe"] = f"<{unsubscribe}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        body = (
            f"{body.rstrip()}\n\n--\nThis email was sent automatically. "
            f"Unsubscribe or choose what we may do: {preferences}\n"
        )
    msg.set_content(body)
    return msg


def _preference_links(ctx: ToolContext, to: str) -> tuple[str, str] | None:
    """The recipient's preferences and one-click unsubscribe URLs, signed for the contact.

    None when the tool runs without the store (a sandboxed or standalone call) or the
    address is no contact of ours: there is no one whose choice a link could record."""
    if ctx.db is None or ctx.settings is None:
        return None
    with ctx.db.connect() as conn:
        found = conn.execute(_RECIPIENT, {"address": to.lower()}).first()
    if found is None:
        return None
    contact_id, org_id = found
    token = tokens.sign(
        tokens.secret(ctx.settings), contact_id=contact_id, org_id=org_id, now=datetime.now(UTC)
    )
    return tokens.preferences_url(ctx.settings, token), tokens.unsubscribe_url(ctx.settings, token)


# Built once (every email looks its recipient up); the lowered address is indexed.
_RECIPIENT = (
    select(col(Contact.id), col(Account.org_id))
    .join(Account, col(Account.id) == col(Contact.account_id))
    .where(func.lower(Contact.email) == bindparam("address"))
    .order_by(col(Contact.id))
)


class _Smtp(smtplib.SMTP):
    """smtplib's client, noting the moment the message is handed over: once DATA's final
    dot has left, the server may have stored it, so a lost reply is not a failure."""

    handed_over = False
    _host: str = ""  # smtplib sets it only when the constructor connects; STARTTLS reads it

    def send(self, s: bytes | str) -> None:
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.handed_over = True


def _refused(code: int, what: str) -> ToolError:
    """An SMTP reply that refuses the message: 4xx is "try later" (known not sent), 5xx is
    final (known not sent, a retry will not change it)."""
    if 400 <= code < 500:
        return ToolUnavailable(f"SMTP {what}: {code} (try later)")
    return ToolError(f"SMTP {what}: {code}")


class _Sessions:
    """SMTP sessions kept open for the next message to the same server (per config): a
    message then costs MAIL, RCPT and DATA, not a connection, a greeting, EHLO, STARTTLS
    and a login too. Only a session whose last message was accepted is kept; one the
    server dropped meanwhile fails before anything is handed over (known not sent), and
    the message goes on a fresh session at once."""

    KEEP = 4  # idle sessions per server

    def __init__(self) -> None:
        self._idle: dict[SmtpConfig, list[_Smtp]] = {}
        self._lock = threading.Lock()

    def take(self, config: SmtpConfig) -> _Smtp | None:
        with self._lock:
            idle = self._idle.get(config)
            return idle.pop() if idle else None

    def give(self, config: SmtpConfig, smtp: _Smtp) -> None:
        with self._lock:
            idle = self._idle.setdefault(config, [])
            if len(idle) < self.KEEP:
                idle.append(smtp)
                return
        _close(smtp)


_SESSIONS = _Sessions()


def smtp_send(config: SmtpConfig, msg: EmailMessage) -> None:
    """Hand one message to the configured SMTP server (STARTTLS and auth by settings),
    on a session kept from the last message when there is one.

    Raises ToolUnavailable when the server was not reached or said 4xx, ToolError on a
    5xx, and ToolOutcomeUnknown when the message was handed over and no reply came."""
    kept = _SESSIONS.take(config)
    if kept is not None:
        try:
            _send(kept, config, msg, fresh=False)
            return
        except ToolUnavailable:  # known not sent (often: the server closed the idle session)
            pass
    _send(_Smtp(timeout=config.timeout), config, msg, fresh=True)


def _send(smtp: _Smtp, config: SmtpConfig, msg: EmailMessage, *, fresh: bool) -> None:
    """One message on `smtp` (connected first when `fresh`); the session is kept when the
    server accepted the message, closed otherwise."""
    smtp.handed_over = False
    smtp._host = config.host  # what STARTTLS checks the certificate against
    kept = False
    try:
        if fresh:
            smtp.connect(config.host, config.port)
            if config.starttls:  # the server's certificate is verified (against ca_file when set)
                smtp.starttls(context=ssl.create_default_context(cafile=config.ca_file or None))
            if config.username:
                smtp.login(config.username, config.password)
        refused = smtp.send_message(msg)
        if refused:  # some recipients refused, the others took it: report, do not resend
            raise ToolError(f"recipient refused: {sorted(refused)}")
        _SESSIONS.give(config, smtp)
        kept = True
    except smtplib.SMTPRecipientsRefused as err:
        codes = [code for code, _ in err.recipients.values()]
        raise (
            _refused(min(codes), "recipient refused")
            if all(400 <= c < 500 for c in codes)
            else ToolError(f"recipient refused: {sorted(err.recipients)}")
        ) from err
    except smtplib.SMTPAuthenticationError as err:
        raise ToolError(f"SMTP authentication failed: {err.smtp_code}") from err
    except smtplib.SMTPResponseException as err:  # MAIL, DATA or the final reply refused it
        raise _refused(err.smtp_code, "refused the message") from err
    except ssl.SSLCertVerificationError as err:  # a configuration to fix, not a bad moment
        raise ToolError(f"SMTP server certificate not trusted: {err.verify_message}") from err
    except (smtplib.SMTPException, OSError) as err:  # disconnected, timed out, refused
        if smtp.handed_over:
            raise ToolOutcomeUnknown(
                f"the message was handed to {config.host}:{config.port} and no reply came: {err}"
            ) from err
        raise ToolUnavailable(f"SMTP server {config.host}:{config.port}: {err}") from err
    finally:
        if not kept:
            _close(smtp)


def _close(smtp: _Smtp) -> None:
    try:
        if smtp.sock is not None and smtp.handed_over:
            smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass  # the message is in; a lost QUIT changes nothing
    smtp.close()


def _deliver(ctx: ToolContext, msg: EmailMessage) -> EmailSent:
    assert ctx.smtp is not None
    result = EmailSent(
        message_id=msg["Message-ID"],
        to=msg["To"],
        subject=msg["Subject"],
        delivered=False,
        preview=msg.as_string(),
    )
    if ctx.dry_run:
        return result
    smtp_send(ctx.smtp, msg)
    return result.model_copy(update={"delivered": True})


@tool(scopes=["email:send"], effect="external", kind="email", cost=0.5, irreversible=True)
def send_email(args: SendEmailArgs, ctx: ToolContext) -> EmailSent:
    """Send a plain-text email to one contact of the account."""
    return _deliver(ctx, _message(ctx, args.to, args.subject, args.body))


@tool(
    scopes=["email:send", "offer:create"],
    effect="external",
    kind="offer",
    cost=2.0,
    significant=True,
    irreversible=True,
)
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


# --- meeting requests (iCalendar over email) ------------------------------------


class MeetingArgs(BaseModel):
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    title: str = Field(min_length=1, max_length=200)
    start: datetime
    minutes: int = Field(30, ge=15, le=240)
    description: str = ""


class MeetingCancelArgs(BaseModel):
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    uid: str = Field(min_length=8)
    title: str
    start: datetime
    minutes: int = 30


class MeetingSent(EmailSent):
    uid: str
    undo: dict = {}


def _ics(
    method: str,
    uid: str,
    organizer: str,
    to: str,
    title: str,
    start: datetime,
    minutes: int,
    description: str,
    sequence: int,
) -> str:
    """The VCALENDAR text, built by the icalendar library: it escapes `\\ ; ,` and newlines in
    text values and folds long lines as RFC 5545 requires (titles come from people and models)."""
    start_utc = start.astimezone(UTC) if start.tzinfo else start.replace(tzinfo=UTC)
    event = Event()
    event.add("uid", uid)
    # A CANCEL must carry a higher SEQUENCE than the REQUEST it withdraws, or calendars ignore it.
    event.add("sequence", sequence)
    event.add("dtstamp", datetime.now(UTC))
    event.add("dtstart", start_utc)
    event.add("dtend", start_utc + timedelta(minutes=minutes))
    event.add("summary", title)
    event.add("description", description)
    event.add("organizer", vCalAddress(f"mailto:{organizer}"))
    attendee = vCalAddress(f"mailto:{to}")
    attendee.params["RSVP"] = "TRUE"
    event.add("attendee", attendee)
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    calendar = Calendar()
    calendar.add("prodid", "-//CS Autopilot//EN")
    calendar.add("version", "2.0")
    calendar.add("method", method)
    calendar.add_component(event)
    return calendar.to_ical().decode()


def _meeting(
    ctx: ToolContext,
    method: str,
    uid: str,
    to: str,
    title: str,
    start: datetime,
    minutes: int,
    description: str,
) -> MeetingSent:
    # An email header cannot hold a line break; the calendar's SUMMARY keeps the title as given.
    one_line = " ".join(title.splitlines())
    msg = _message(
        ctx,
        to,
        f"{'Cancelled: ' if method == 'CANCEL' else 'Invitation: '}{one_line}",
        description or title,
    )
    ics = _ics(
        method,
        uid,
        ctx.smtp.mail_from if ctx.smtp else "",
        to,
        title,
        start,
        minutes,
        description,
        sequence=1 if method == "CANCEL" else 0,
    )
    msg.add_alternative(ics, subtype="calendar", params={"method": method})
    sent = _deliver(ctx, msg)
    return MeetingSent(**sent.model_dump(), uid=uid)


@tool(
    scopes=["email:send", "meeting:create"],
    effect="external",
    kind="meeting",
    cost=0.5,
    compensate="cancel_meeting_request",
)
def send_meeting_request(args: MeetingArgs, ctx: ToolContext) -> MeetingSent:
    """Invite a contact to a meeting: an iCalendar REQUEST by email (any calendar accepts it)."""
    uid = f"{sha256_hex(ctx.idempotency_key)[:24]}@cs-autopilot"
    out = _meeting(
        ctx, "REQUEST", uid, args.to, args.title, args.start, args.minutes, args.description
    )
    return out.model_copy(
        update={
            "undo": {
                "to": args.to,
                "uid": uid,
                "title": args.title,
                "start": args.start.isoformat(),
                "minutes": args.minutes,
            }
        }
    )


@tool(scopes=["email:send", "meeting:create"], effect="external", kind="compensation", cost=0.5)
def cancel_meeting_request(args: MeetingCancelArgs, ctx: ToolContext) -> MeetingSent:
    """Cancel a meeting this product sent: an iCalendar CANCEL for the same UID."""
    return _meeting(ctx, "CANCEL", args.uid, args.to, args.title, args.start, args.minutes, "")
