"""Tools called directly and through the exactly-once executor, against a real SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from autopilot.runtime.contracts.tool import ToolCall
from autopilot.runtime.devstack.smtp_sink import start_smtp_sink
from autopilot.runtime.execution.executor import execute_once
from autopilot.runtime.store.db import make_engine
from autopilot.runtime.store.mail import ReceivedMail
from autopilot.runtime.store.tool_calls import ToolCallRecord
from autopilot.tools.builtin import registry
from autopilot.tools.email import SendEmailArgs, send_email
from autopilot.tools.registry import (
    SmtpConfig,
    ToolArgsInvalid,
    ToolContext,
    ToolError,
    ToolNotGranted,
    ToolOutcomeUnknown,
    ToolUnavailable,
)
from tests.conftest import free_port
from tests.reliability.faults import FaultySmtp

ARGS = {"to": "champion@acme.example", "subject": "Hello", "body": "Can we help?"}


@pytest.fixture
def mail(tmp_path: Path) -> Iterator[tuple[Engine, SmtpConfig]]:
    db = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    port = free_port()
    sink = start_smtp_sink(db, port=port)
    yield db, SmtpConfig(host="127.0.0.1", port=port, mail_from="cs@vendor.example")
    sink.stop()


def mails(db: Engine) -> list[ReceivedMail]:
    with Session(db) as s:
        return list(s.exec(select(ReceivedMail)))


def test_registry_lists_schema_from_the_argument_model() -> None:
    tool = registry.get("send_email")
    assert tool.fn is send_email  # the decorator returns the function unchanged
    assert tool.schema()["required"] == ["to", "subject", "body"]
    assert tool.effect == "external" and "email:send" in tool.scopes


def test_dry_run_renders_without_sending(mail: tuple[Engine, SmtpConfig]) -> None:
    db, smtp = mail
    out = send_email(SendEmailArgs(**ARGS), ToolContext(idempotency_key="wf/1/0", dry_run=True, smtp=smtp))
    assert not out.delivered and "Subject: Hello" in out.preview and "X-Idempotency-Key: wf/1/0" in out.preview
    assert mails(db) == []


def test_same_key_sends_once_and_replays_the_stored_result(mail: tuple[Engine, SmtpConfig]) -> None:
    db, smtp = mail
    call = ToolCall(tool="send_email", args=ARGS, idempotency_key="wf/1/0", granted=["send_email"])
    first = execute_once(db, registry, call, smtp)
    second = execute_once(db, registry, call, smtp)
    assert not first.replayed and second.replayed and first.output == second.output
    assert len(mails(db)) == 1 and mails(db)[0].message_id == first.output["message_id"]


def test_a_started_but_unfinished_call_is_not_repeated(mail: tuple[Engine, SmtpConfig]) -> None:
    db, smtp = mail
    call = ToolCall(tool="send_email", args=ARGS, idempotency_key="wf/2/0", granted=["send_email"])
    execute_once(db, registry, call, smtp)
    with Session(db) as s:  # as if the process died between the SMTP handshake and the commit
        row = s.get(ToolCallRecord, "wf/2/0")
        assert row is not None
        row.status = "started"
        s.add(row)
        s.commit()
    with pytest.raises(ToolOutcomeUnknown):
        execute_once(db, registry, call, smtp)
    assert len(mails(db)) == 1
    with Session(db) as s:  # not left `started` for ever: visibly unknown
        assert s.get(ToolCallRecord, "wf/2/0").status == "unknown"  # type: ignore[union-attr]
    with pytest.raises(ToolOutcomeUnknown):  # and still never repeated
        execute_once(db, registry, call, smtp)
    assert len(mails(db)) == 1


def test_a_call_that_failed_before_sending_may_be_retried(mail: tuple[Engine, SmtpConfig]) -> None:
    db, smtp = mail
    dead = SmtpConfig(host="127.0.0.1", port=free_port(), mail_from=smtp.mail_from)
    call = ToolCall(tool="send_email", args=ARGS, idempotency_key="wf/3/0", granted=["send_email"])
    with pytest.raises(ToolUnavailable):  # connection refused: known not sent
        execute_once(db, registry, call, dead)
    with Session(db) as s:
        assert s.get(ToolCallRecord, "wf/3/0").status == "failed"  # type: ignore[union-attr]
    result = execute_once(db, registry, call, smtp)
    assert result.output["delivered"] and len(mails(db)) == 1
    with Session(db) as s:
        assert s.get(ToolCallRecord, "wf/3/0").attempts == 2  # type: ignore[union-attr]


def test_ungranted_tool_and_bad_arguments_run_nothing(mail: tuple[Engine, SmtpConfig]) -> None:
    db, smtp = mail
    with pytest.raises(ToolNotGranted):
        execute_once(db, registry, ToolCall(tool="send_email", args=ARGS, idempotency_key="k1",
                                            granted=["send_offer"]), smtp)
    with pytest.raises(ToolArgsInvalid):
        execute_once(db, registry, ToolCall(tool="send_email", args={**ARGS, "to": "not-an-address"},
                                            idempotency_key="k2", granted=["send_email"]), smtp)
    assert mails(db) == []


def test_meeting_request_and_its_cancellation(tmp_path: Path) -> None:
    """An iCalendar REQUEST over SMTP, then the compensating CANCEL for the same UID."""
    from datetime import UTC, datetime

    from sqlmodel import Session, select

    from autopilot.runtime.devstack.smtp_sink import start_smtp_sink
    from autopilot.runtime.store.db import make_engine
    from autopilot.runtime.store.mail import ReceivedMail
    from autopilot.tools.builtin import registry
    from autopilot.tools.registry import SmtpConfig, ToolContext, ToolError
    from tests.conftest import free_port

    db = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    port = free_port()
    sink = start_smtp_sink(db, port=port)
    smtp = SmtpConfig(host="127.0.0.1", port=port, mail_from="csm@vendor.example")
    args = {"to": "champion@acme.example", "title": "Adoption session", "minutes": 30,
            "start": datetime(2026, 12, 1, 15, 0, tzinfo=UTC).isoformat()}
    try:
        dry = registry.call("send_meeting_request", args, ToolContext("run/9/0", True, smtp=smtp))
        assert "METHOD:REQUEST" in dry["preview"] and "DTSTART:20261201T150000Z" in dry["preview"]
        sent = registry.call("send_meeting_request", args, ToolContext("run/9/0", False, smtp=smtp))
        assert sent["delivered"] and sent["undo"]["uid"] == sent["uid"]
        assert registry.get("send_meeting_request").compensate == "cancel_meeting_request"
        registry.call("cancel_meeting_request", sent["undo"], ToolContext("run/9/0/compensate", False, smtp=smtp))
        with Session(db) as s:
            raws = [m.raw for m in s.exec(select(ReceivedMail).order_by(ReceivedMail.id))]
        assert len(raws) == 2
        assert "METHOD:REQUEST" in raws[0] and "METHOD:CANCEL" in raws[1] and "STATUS:CANCELLED" in raws[1]
        assert f"UID:{sent['uid']}" in raws[0].replace("\r\n ", "") and f"UID:{sent['uid']}" in raws[1].replace("\r\n ", "")
    finally:
        sink.stop()
        db.dispose()


def test_starttls_and_auth_against_a_real_tls_server(tmp_path: Path) -> None:
    """An SMTP server that requires STARTTLS and a login (aiosmtpd with a certificate made
    here): the email tool upgrades, verifies the certificate against the CA and logs in;
    a certificate it cannot verify stops it before anything is sent."""
    import ssl
    import subprocess

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from autopilot.runtime.devstack.smtp_sink import StoreHandler
    from autopilot.tools.builtin import registry
    from autopilot.tools.registry import SmtpConfig, ToolContext
    from tests.conftest import free_port

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)

    def auth(server, session, envelope, mechanism, data):  # type: ignore[no-untyped-def]
        return AuthResult(success=(data.login, data.password) == (b"mailer", b"s3cret"))

    db = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    port = free_port()
    server = Controller(StoreHandler(db), hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
                        authenticator=auth, auth_required=True, auth_require_tls=True)
    server.start()
    args = {"to": "champion@acme.example", "subject": "Hello over TLS", "body": "hi"}
    try:
        good = SmtpConfig(host="127.0.0.1", port=port, mail_from="cs@vendor.example", username="mailer",
                          password="s3cret", starttls=True, ca_file=str(cert))
        out = registry.call("send_email", args, ToolContext("tls/1", False, smtp=good))
        assert out["delivered"]
        anonymous = SmtpConfig(**{**good.__dict__, "username": "", "password": ""})
        with pytest.raises(ToolError) as refused:  # the server insists on a login: 530, final
            registry.call("send_email", args, ToolContext("tls/2", False, smtp=anonymous))
        assert refused.value.code == "tool.failed" and "530" in str(refused.value)
        untrusted = SmtpConfig(**{**good.__dict__, "ca_file": ""})
        with pytest.raises(ToolError) as untrusted_err:  # a configuration error, not "try later"
            registry.call("send_email", args, ToolContext("tls/3", False, smtp=untrusted))
        assert untrusted_err.value.code == "tool.failed"
        assert isinstance(untrusted_err.value.__cause__, ssl.SSLCertVerificationError)
        with Session(db) as s:
            assert [m.subject for m in s.exec(select(ReceivedMail))] == ["Hello over TLS"]
    finally:
        server.stop()
        db.dispose()


# --- how a send ends: known not sent, refused, or unknown -------------------------------


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[tuple[Engine, FaultySmtp, SmtpConfig]]:
    db = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    server = FaultySmtp(port=free_port(), reply_delay_s=2.0).start()
    yield db, server, SmtpConfig(host="127.0.0.1", port=server.port, mail_from="cs@vendor.example", timeout=0.5)
    server.stop()
    db.dispose()


def _status(db: Engine, key: str) -> str:
    with Session(db) as s:
        row = s.get(ToolCallRecord, key)
        assert row is not None
        return row.status


def test_try_later_is_known_not_sent_and_retried_into_one_delivery(faulty) -> None:  # type: ignore[no-untyped-def]
    db, server, smtp = faulty
    call = ToolCall(tool="send_email", args=ARGS, idempotency_key="f/1", granted=["send_email"])
    server.mode = "tempfail"
    with pytest.raises(ToolUnavailable):
        execute_once(db, registry, call, smtp)
    assert server.stored == [] and _status(db, "f/1") == "failed"
    server.mode = "ok"
    execute_once(db, registry, call, smtp)
    assert len(server.stored) == 1 and _status(db, "f/1") == "done"


def test_a_refused_recipient_is_final_and_not_retryable(faulty) -> None:  # type: ignore[no-untyped-def]
    db, server, smtp = faulty
    server.mode = "reject"
    call = ToolCall(tool="send_email", args=ARGS, idempotency_key="f/2", granted=["send_email"])
    with pytest.raises(ToolError) as err:
        execute_once(db, registry, call, smtp)
    assert not isinstance(err.value, ToolUnavailable | ToolOutcomeUnknown)
    assert server.stored == [] and _status(db, "f/2") == "failed"


def test_a_reply_lost_after_the_message_was_stored_is_unknown_and_never_resent(faulty) -> None:  # type: ignore[no-untyped-def]
    """The server stores the message; its 250 arrives after the client's timeout. Before,
    this was a failure retried into a second copy."""
    db, server, smtp = faulty
    server.mode = "lost_reply"
    call = ToolCall(tool="send_email", args=ARGS, idempotency_key="f/3", granted=["send_email"])
    with pytest.raises(ToolOutcomeUnknown):
        execute_once(db, registry, call, smtp)
    assert len(server.stored) == 1 and _status(db, "f/3") == "unknown"
    server.mode = "ok"
    with pytest.raises(ToolOutcomeUnknown):  # a retry does not guess
        execute_once(db, registry, call, smtp)
    assert len(server.stored) == 1


def test_a_server_that_is_down_is_known_not_sent(faulty) -> None:  # type: ignore[no-untyped-def]
    db, server, smtp = faulty
    server.stop()
    call = ToolCall(tool="send_email", args=ARGS, idempotency_key="f/4", granted=["send_email"])
    with pytest.raises(ToolUnavailable):
        execute_once(db, registry, call, smtp)
    assert _status(db, "f/4") == "failed"


def test_messages_to_one_server_share_a_session_and_a_dropped_one_is_replaced(faulty) -> None:  # type: ignore[no-untyped-def]
    """One SMTP session carries message after message (no connection, greeting and EHLO
    each); when the server has dropped it meanwhile, the message goes on a fresh one,
    once, and the call is done."""
    db, server, smtp = faulty
    for i in range(3):
        call = ToolCall(tool="send_email", args=ARGS, idempotency_key=f"s/{i}", granted=["send_email"])
        execute_once(db, registry, call, smtp)
    assert len(server.stored) == 3 and len({m.peer for m in server.stored}) == 1
    server.stop()  # every session ends with the server
    server.start()
    call = ToolCall(tool="send_email", args=ARGS, idempotency_key="s/3", granted=["send_email"])
    execute_once(db, registry, call, smtp)
    assert len(server.stored) == 4 and server.stored[3].peer != server.stored[0].peer
    assert _status(db, "s/3") == "done"
