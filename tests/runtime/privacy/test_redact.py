"""Redaction: personal fields and patterns leave values and log records, in each mode."""

from __future__ import annotations

import io
import logging
import re

import pytest

from autopilot.runtime.config import Settings
from autopilot.runtime.privacy.redact import RedactingFilter, RedactionRules, install, redact

EMAIL = "ana.lee@acme.example"
RULES = RedactionRules.from_settings(Settings())


def test_personal_fields_and_patterns_are_masked_anywhere_in_a_value() -> None:
    value = {
        "Recipient": "Ana Lee",  # keys match whatever their case
        "args": {"body": f"write to {EMAIL} or +44 20 7946 0958", "cc": [EMAIL]},
        "notes": [f"from {EMAIL.upper()}", ("tuple", EMAIL)],
        "sent_at": "2026-12-04 20:13:48",  # a timestamp is not a phone number
        "count": 3,
    }
    out = redact(value, RULES)
    assert out == {
        "Recipient": "[redacted]",
        "args": {"body": "write to [redacted] or [redacted]", "cc": "[redacted]"},
        "notes": ["from [redacted]", ("tuple", "[redacted]")],
        "sent_at": "2026-12-04 20:13:48",
        "count": 3,
    }
    assert value["args"]["cc"] == [EMAIL]  # the input is not changed


def test_hash_mode_keeps_equal_values_equal_and_drop_mode_removes_them() -> None:
    hashed = RedactionRules(RULES.fields, RULES.patterns, mode="hash")
    out = redact({"email": EMAIL, "text": f"to {EMAIL}"}, hashed)
    assert re.fullmatch(r"\[sha256:[0-9a-f]{12}\]", out["email"])
    assert out["text"] == f"to {out['email']}"
    dropped = redact({"email": EMAIL, "text": f"to {EMAIL}", "n": 1},
                     RedactionRules(RULES.fields, RULES.patterns, mode="drop"))  # fmt: skip
    assert dropped == {"text": "to ", "n": 1}


def test_a_contacts_own_name_is_redacted_when_given() -> None:
    rules = RULES.with_values(["Ana Lee"])
    assert redact("Hi ANA LEE, your renewal", rules) == "Hi [redacted], your renewal"


def test_the_mode_comes_from_the_settings_and_a_bad_one_is_refused() -> None:
    assert RedactionRules.from_settings(Settings(redact_mode="drop")).mode == "drop"
    with pytest.raises(ValueError, match="redact_mode"):
        Settings(redact_mode="shred")  # type: ignore[arg-type]


def test_a_log_record_carries_no_email_in_its_message_args_or_extra_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s | %(recipient)s | %(account)s"))
    install([handler], RULES)
    install([handler], RULES)  # once is enough: a second install adds nothing
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    log = logging.getLogger("tests.privacy.redact")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("sent to %s", EMAIL, extra={"recipient": EMAIL, "account": "acc-1"})
    finally:
        log.removeHandler(handler)
    line = stream.getvalue()
    assert EMAIL not in line
    assert line.strip() == "sent to [redacted] | [redacted] | acc-1"
