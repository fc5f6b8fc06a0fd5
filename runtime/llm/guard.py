"""The network guard: with AUTOPILOT_LLM_LOOPBACK_ONLY=1 (the test suite sets it) a model
call may only reach a loopback host, so no test, and no offline deployment, can ever
send data to (or be billed by) a real provider by accident."""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from autopilot.runtime.llm.errors import LlmGuardError

ENV = "AUTOPILOT_LLM_LOOPBACK_ONLY"


def loopback_only() -> bool:
    return os.environ.get(ENV, "").strip().lower() in ("1", "true", "yes", "on")


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(url: str) -> None:
    """Refuse `url` unless it is on loopback, when the guard is on."""
    if loopback_only() and not is_loopback(url):
        host = urlsplit(url).hostname or url
        raise LlmGuardError(f"{ENV} is set: model calls may only reach loopback, not {host}")
