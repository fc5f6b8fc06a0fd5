"""Tokens issued and revoked with `autopilot users token`, as seen by the API: an expired
or revoked token is a 401, from its next request on."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from autopilot.runtime.auth.users import issue_token, token_id_of
from tests.conftest import Stack
from tests.runtime.test_cli import arun_cli, stack_env


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_an_expired_token_is_a_401(stack: Stack) -> None:
    expired = issue_token(
        stack.db, user_id="maria", days=1, now=datetime.now(UTC) - timedelta(days=1)
    )
    r = await stack.http.get("/approvals", headers=bearer(expired))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


async def test_tokens_issued_for_days_and_revoked_by_id_or_all_from_the_cli(stack: Stack) -> None:
    env = stack_env(stack)
    proc = await arun_cli("users", "token", "maria", "--days", "7", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    week = json.loads(proc.stdout)
    expires = datetime.fromisoformat(week["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=1)
    value = issue_token(stack.db, user_id="maria", days=30)
    month = {"token": value, "id": token_id_of(value)}
    issued = [week, month]
    for token in issued:
        assert (
            await stack.http.get("/approvals", headers=bearer(token["token"]))
        ).status_code == 200

    proc = await arun_cli("users", "token", "maria", "--revoke", week["id"], "--json", env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout)["revoked"] == [week["id"]], proc.stderr
    assert (await stack.http.get("/approvals", headers=bearer(week["token"]))).status_code == 401
    assert (await stack.http.get("/approvals", headers=bearer(month["token"]))).status_code == 200

    proc = await arun_cli("users", "token", "maria", "--revoke", "--all", "--json", env=env)
    assert proc.returncode == 0 and json.loads(proc.stdout)["revoked"] == [month["id"]], proc.stderr
    assert (await stack.http.get("/approvals", headers=bearer(month["token"]))).status_code == 401

    proc = await arun_cli("users", "tokens", "maria", "--json", env=env)
    states = {t["id"]: t["state"] for t in json.loads(proc.stdout)["tokens"]}
    assert states == {week["id"]: "revoked", month["id"]: "revoked"}
