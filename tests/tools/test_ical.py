"""Meeting requests carry RFC 5545 iCalendar: text values escaped, long lines folded,
and the CANCEL withdraws the REQUEST (same UID, higher SEQUENCE). Checked by parsing
what reached a real SMTP server back with the icalendar library."""

from __future__ import annotations

import email
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from icalendar import Calendar, Event
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.devstack.smtp_sink import start_smtp_sink
from autopilot.runtime.store.db import make_engine
from autopilot.runtime.store.mail import ReceivedMail
from autopilot.tools.builtin import registry
from autopilot.tools.registry import SmtpConfig, ToolContext
from tests.conftest import free_port

TITLE = 'Renewal; pricing, terms \\ "next steps"\nsecond line'
DESCRIPTION = "Agenda:\n1. usage, seats; modules\n2. C:\\exports\\q3.csv\n" + "long text " * 20
START = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[Engine, SmtpConfig]]:
    db = make_engine(f"sqlite:///{tmp_path / 'mail.db'}")
    port = free_port()
    server = start_smtp_sink(db, port=port)
    yield db, SmtpConfig(host="127.0.0.1", port=port, mail_from="csm@vendor.example")
    server.stop()
    db.dispose()


def calendar_of(raw: str) -> tuple[str, Event]:
    """The METHOD and the single VEVENT of the message's text/calendar part."""
    msg = email.message_from_string(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    text = part.get_content()
    assert all(len(line.encode()) <= 75 for line in text.splitlines())  # folded (RFC 5545 §3.1)
    calendar = Calendar.from_ical(text)
    event, = calendar.events
    return str(calendar["METHOD"]), event


def test_text_with_delimiters_and_newlines_survives_the_round_trip(sink: tuple[Engine, SmtpConfig]) -> None:
    db, smtp = sink
    args = {"to": "champion@acme.example", "title": TITLE, "description": DESCRIPTION, "minutes": 45,
            "start": START.isoformat()}
    sent = registry.call("send_meeting_request", args, ToolContext("run/ical/0", False, smtp=smtp))
    registry.call("cancel_meeting_request", sent["undo"], ToolContext("run/ical/0/compensate", False, smtp=smtp))
    with Session(db) as s:
        raws = [m.raw for m in s.exec(select(ReceivedMail).order_by(col(ReceivedMail.id)))]
    assert len(raws) == 2

    method, request = calendar_of(raws[0])
    assert method == "REQUEST"
    assert str(request["SUMMARY"]) == TITLE and str(request["DESCRIPTION"]) == DESCRIPTION
    assert str(request["UID"]) == sent["uid"] and request["SEQUENCE"] == 0
    assert request.decoded("DTSTART") == START and (request.decoded("DTEND") - START).total_seconds() == 45 * 60
    assert str(request["STATUS"]) == "CONFIRMED" and str(request["ATTENDEE"]) == "mailto:champion@acme.example"

    method, cancel = calendar_of(raws[1])
    assert method == "CANCEL"
    assert str(cancel["UID"]) == sent["uid"] and cancel["SEQUENCE"] == 1 and str(cancel["STATUS"]) == "CANCELLED"
    assert str(cancel["SUMMARY"]) == TITLE
