"""Mail received by the embedded SMTP server."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class ReceivedMail(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(index=True)
    mail_from: str
    rcpt_to: str
    subject: str
    body: str
    raw: str
    received_at: datetime
