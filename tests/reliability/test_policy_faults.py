"""The policy engine down, slow, failing, answering garbage or 20 MB: every action is
denied (fail closed), nothing is sent, and the decision log stays small."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.policy.engine import UNAVAILABLE
from autopilot.runtime.policy.opa import OpaEngine
from autopilot.runtime.store.actions import PolicyDecisionRecord
from tests.conftest import REPO, free_port
from tests.policies.opa_server import opa_like_server


@pytest.mark.parametrize("mode", ["down", "slow", "error", "garbage", "oversized", "undefined"])
async def test_a_failing_policy_engine_denies_and_nothing_is_sent(stack_factory: Any, mode: str) -> None:
    folder = REPO / "policies"
    with opa_like_server(folder) as opa:
        url = f"http://127.0.0.1:{free_port()}" if mode == "down" else opa.url
        engine = OpaEngine(url, folder, timeout_s=1.0)
        async with stack_factory(policy=engine) as stack:
            opa.mode = "ok"
            account, = stack.pick("smb", max_arr=50_000)
            opa.mode = mode
            wf_id, = await stack.post_events(drop_events(stack.db, account))
            result = await stack.run_result(wf_id)
            assert result.outcomes and all(o.status == "denied" for o in result.outcomes)
            assert all(UNAVAILABLE in o.codes for o in result.outcomes)
            assert stack.mails() == []
            with Session(stack.db) as s:
                rows = list(s.exec(select(PolicyDecisionRecord)))
            assert rows and all(len(str(r.result)) < 4096 for r in rows)  # no 20 MB rows
