"""Redaction of personal data from anything about to leave the store: log records,
exports, replay reports.

One function, `redact(value, rules)`, so every exit applies the same rules: keys that name
personal fields (email, recipient, phone, contact name, ...) lose their value, and text
anywhere matching a personal pattern (an email address, a phone number) or one of the
rules' literal values (a contact's own name) is replaced. The mode says how: `mask`
("[redacted]"), `hash` (a short sha256, so equal values still group in a report), or
`drop` (the key, or the matched text, is removed). The rules come from the settings
unless given."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from autopilot.runtime.config import Settings, get_settings

Mode = Literal["mask", "hash", "drop"]
MASK = "[redacted]"


@dataclass(frozen=True)
class RedactionRules:
    fields: frozenset[str] = frozenset()  # keys whose values are personal (lower case)
    patterns: tuple[re.Pattern[str], ...] = ()
    mode: Mode = "mask"
    mask: str = MASK
    # Literal personal values (a contact's name and email), matched case-insensitively.
    values: tuple[str, ...] = field(default=())

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RedactionRules:
        s = settings or get_settings()
        return cls(
            fields=frozenset(f.lower() for f in s.redact_fields),
            patterns=tuple(re.compile(p) for p in s.redact_patterns),
            mode=s.redact_mode,
        )

    def with_values(self, values: Iterable[str], *, mask: str | None = None) -> RedactionRules:
        """These rules, also replacing each of `values` (empty ones ignored)."""
        extra = tuple(v for v in values if v.strip())
        return RedactionRules(
            self.fields, self.patterns, self.mode, mask or self.mask, self.values + extra
        )

    def _text_patterns(self) -> list[re.Pattern[str]]:
        literal = [re.compile(re.escape(v), re.IGNORECASE) for v in self.values]
        # Longest literal first: a name inside an email address goes with the address.
        literal.sort(key=lambda p: len(p.pattern), reverse=True)
        return literal + list(self.patterns)


def _replacement(rules: RedactionRules, text: str) -> str:
    if rules.mode == "hash":
        return f"[sha256:{hashlib.sha256(text.encode()).hexdigest()[:12]}]"
    if rules.mode == "drop":
        return ""
    return rules.mask


def _redact_text(text: str, rules: RedactionRules, patterns: list[re.Pattern[str]]) -> str:
    for pattern in patterns:
        text = pattern.sub(lambda m: _replacement(rules, m.group(0)), text)
    return text


def _walk(value: Any, rules: RedactionRules, patterns: list[re.Pattern[str]]) -> Any:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, str):
        return _redact_text(value, rules, patterns)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in rules.fields and item is not None:
                if rules.mode == "drop":
                    continue
                out[key] = _replacement(rules, str(item))
            else:
                out[key] = _walk(item, rules, patterns)
        return out
    if isinstance(value, list | tuple):
        return type(value)(_walk(v, rules, patterns) for v in value)  # pyright: ignore[reportUnknownArgumentType, reportUnknownVariableType]
    return value


def redact(value: Any, rules: RedactionRules | None = None) -> Any:
    """`value` with personal data redacted: a new object (the input is not changed);
    a pydantic model comes back as its JSON-mode dict. Numbers, booleans and None pass."""
    rules = rules or RedactionRules.from_settings()
    return _walk(value, rules, rules._text_patterns())  # pyright: ignore[reportPrivateUsage]


# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """A handler filter: the record's message, arguments and `extra` fields are redacted
    before any formatter sees them. On handlers (not loggers): records of child loggers
    reach a handler without passing their ancestors' logger filters."""

    def __init__(self, rules: RedactionRules | None = None) -> None:
        super().__init__()
        self.rules = rules or RedactionRules.from_settings()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.rules)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                setattr(record, key, redact({key: value}, self.rules).get(key, MASK))
        return True


def install(
    handlers: Iterable[logging.Handler] | None = None, rules: RedactionRules | None = None
) -> RedactingFilter:
    """Put one redacting filter on `handlers` (default: the root logger's)."""
    flt = RedactingFilter(rules)
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
    return flt
