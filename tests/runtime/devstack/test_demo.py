"""`autopilot demo` picks its ports: the configured ones as given, free ones otherwise."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.demo import demo_settings
from tests.conftest import free_port

DEFAULTS = Settings.model_fields


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.setenv("AUTOPILOT_DATA_DIR", str(tmp_path))
    for name in ("TEMPORAL_ADDRESS", "AUTOPILOT_TEMPORAL_ADDRESS", "AUTOPILOT_SMTP_HOST", "AUTOPILOT_API_PORT",
                 "AUTOPILOT_TEMPORAL_PORT", "AUTOPILOT_SMTP_PORT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_ports_set_in_the_environment_are_used(env: pytest.MonkeyPatch) -> None:
    api, temporal, smtp = free_port(), free_port(), free_port()
    env.setenv("AUTOPILOT_API_PORT", str(api))
    env.setenv("AUTOPILOT_TEMPORAL_PORT", str(temporal))
    env.setenv("AUTOPILOT_SMTP_PORT", str(smtp))
    settings = demo_settings(Settings())
    assert (settings.api_port, settings.temporal_port, settings.smtp_port) == (api, temporal, smtp)
    assert settings.temporal_address == ""  # nothing listens there: the demo starts its own server


def test_unset_ports_are_free_ones_not_the_defaults(env: pytest.MonkeyPatch) -> None:
    settings = demo_settings(Settings())
    # The defaults may be held by a running `autopilot up`.
    assert settings.api_port != DEFAULTS["api_port"].default
    assert settings.smtp_port != DEFAULTS["smtp_port"].default


def test_a_configured_port_in_use_fails_before_anything_starts(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    kept = tmp_path / "demo" / "keep"
    kept.parent.mkdir()
    kept.write_text("previous demo")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env.setenv("AUTOPILOT_API_PORT", str(busy.getsockname()[1]))
        with pytest.raises(RuntimeError):
            demo_settings(Settings())
    assert kept.exists()  # the previous demo's data is left alone when the demo cannot run
