"""Signed preferences tokens: the only credential a customer has for their choices.

A token names one contact of one organisation and when it was issued, signed with
HMAC-SHA256 under a secret from settings (or one generated into the data directory,
like the audit key): an email link must keep working for months, so the token carries
no expiry, and changing the secret withdraws every link at once. The secret is never
logged or put in an error."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from autopilot.runtime.config import Settings

VERSION = "v1"
SECRET_FILE = "preferences-secret"


class TokenError(ValueError):
    """A token that is not ours: `reason` names the problem (malformed, signature)."""

    def __init__(self, reason: str, msg: str) -> None:
        super().__init__(msg)
        self.reason = reason


@dataclass(frozen=True)
class PreferencesToken:
    contact_id: str
    org_id: str
    issued_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _load_or_create(path: Path) -> bytes:
    """The secret in `path`, created owner-readable only (0600) when there is none yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it meanwhile
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def secret(settings: Settings) -> bytes:
    if settings.preferences_secret is not None and settings.preferences_secret.get_secret_value():
        return settings.preferences_secret.get_secret_value().encode()
    return _load_or_create(settings.data_dir / SECRET_FILE)


def base_url(settings: Settings) -> str:
    """Where customers reach the preferences page: the public address, else the API's own."""
    return (settings.public_url or f"http://{settings.api_host}:{settings.api_port}").rstrip("/")


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, f"{VERSION}.{body}".encode(), hashlib.sha256).digest())


def sign(key: bytes, *, contact_id: str, org_id: str, now: datetime) -> str:
    claims = {"c": contact_id, "o": org_id, "iat": int(now.timestamp())}
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{VERSION}.{body}.{_mac(key, body)}"


def verify(key: bytes, token: str) -> PreferencesToken:
    """The token's claims, or TokenError: `malformed` (not a token of ours) or
    `signature` (altered, or signed under another secret)."""
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != VERSION:
        raise TokenError("malformed", "the token is not a preferences token")
    _, body, mac = parts
    if not hmac.compare_digest(_mac(key, body), mac):
        raise TokenError("signature", "the token's signature does not match")
    try:
        claims = json.loads(_unb64(body))
        return PreferencesToken(
            contact_id=str(claims["c"]),
            org_id=str(claims["o"]),
            issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
        )
    except (binascii.Error, ValueError, KeyError, TypeError) as err:
        raise TokenError("malformed", "the token's claims cannot be read") from err


def preferences_url(settings: Settings, token: str) -> str:
    return f"{base_url(settings)}/preferences/{token}"


def unsubscribe_url(settings: Settings, token: str) -> str:
    return f"{preferences_url(settings, token)}/unsubscribe"
