"""The embedded SMTP server (aiosmtpd): stores every received message in the store."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy.engine import Engine

from autopilot.runtime.store.db import transaction
from autopilot.runtime.store.mail import ReceivedMail


def _body(msg: Message) -> str:
    part = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), msg)
    payload = part.get_payload(decode=True)
    return (
        payload.decode(part.get_content_charset() or "utf-8", "replace")
        if isinstance(payload, bytes)
        else ""
    )


class StoreHandler:
    def __init__(self, db: Engine) -> None:
        self.db = db

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content)
        with transaction(self.db) as s:
            for rcpt in envelope.rcpt_tos:
                s.add(
                    ReceivedMail(
                        message_id=msg.get("Message-ID", ""),
                        mail_from=envelope.mail_from,
                        rcpt_to=rcpt,
                        subject=msg.get("Subject", ""),
                        body=_body(msg),
                        raw=envelope.content.decode("utf-8", "replace"),
                        received_at=datetime.now(UTC),
                    )
                )
        return "250 Message accepted for delivery"


def start_smtp_sink(db: Engine, host: str = "127.0.0.1", port: int = 8025) -> Controller:
    controller = Controller(StoreHandler(db), hostname=host, port=port)
    controller.start()
    return controller
