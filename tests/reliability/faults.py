"""Servers that misbehave on purpose, for the fault suite: an SMTP server (aiosmtpd, real
protocol) that can be down, say "try later", refuse a recipient, or store a message and
lose its reply; it counts what it stored, so tests count effects at the receiver."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from email import message_from_bytes
from typing import Any, Literal

from aiosmtpd.controller import Controller

Mode = Literal["ok", "tempfail", "reject", "lost_reply"]


@dataclass
class Stored:
    message_id: str
    rcpt: str
    subject: str
    peer: Any = None  # the client's address and port: one per SMTP session


@dataclass
class FaultySmtp:
    port: int
    mode: Mode = "ok"
    reply_delay_s: float = 3.0  # lost_reply: the 250 comes after the client gave up
    ack_delay_s: float = 0.0  # ok: the 250 comes this late (a window to be killed in)
    stored: list[Stored] = field(default_factory=list)
    attempts: int = 0  # DATA commands seen (a retry shows here)
    connections_refused_while_down: int = 0
    _controller: Controller | None = None

    def start(self) -> FaultySmtp:
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def up(self) -> bool:
        return self._controller is not None

    def message_ids(self) -> list[str]:
        return [m.message_id for m in self.stored]


class _Handler:
    def __init__(self, server: FaultySmtp) -> None:
        self.server = server

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.server.mode == "reject":
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.server.attempts += 1
        if self.server.mode == "tempfail":
            return "451 4.3.0 try again later"
        msg = message_from_bytes(envelope.content)
        for rcpt in envelope.rcpt_tos:
            self.server.stored.append(
                Stored(msg.get("Message-ID", ""), rcpt, msg.get("Subject", ""), session.peer)
            )
        if self.server.mode == "lost_reply":
            await asyncio.sleep(self.server.reply_delay_s)
        elif self.server.ack_delay_s:
            await asyncio.sleep(self.server.ack_delay_s)
        return "250 Message accepted for delivery"
