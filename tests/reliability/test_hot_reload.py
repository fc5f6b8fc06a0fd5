"""Policy edits, good and bad, land while events arrive through the API (the watcher
thread swaps the bundle under live runs): each run is decided by the bundle in force
when it was dispatched or by none (fail closed), a bad edit never takes effect, and
nothing executes against the policy in force."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.policy.rego import RegoEngine
from autopilot.runtime.services import PolicyStatus, watch_policies
from autopilot.runtime.store.actions import PolicyDecisionRecord
from tests.conftest import REPO, wait_for


def _budget(folder: Path, pct: Any) -> None:
    path = folder / "autopilot" / "budget" / "data.json"
    doc = json.loads(path.read_text())
    doc["limits"]["segments"]["smb"]["account_quarter_pct_of_arr"] = pct
    path.write_text(json.dumps(doc))


async def test_good_and_bad_edits_while_events_arrive(stack_factory: Any, tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    shutil.copytree(REPO / "policies", folder)
    engine = RegoEngine(folder)
    status = PolicyStatus(bundle_hash=engine.bundle_hash)
    stop = watch_policies(engine, status, interval_s=0.05)
    original = engine.bundle_hash
    good = {original}
    original_rego = (folder / "autopilot" / "budget" / "policy.rego").read_text()
    original_data = (folder / "autopilot" / "budget" / "data.json").read_text()
    try:
        async with stack_factory(policy=engine) as stack:
            stack.services.policy_status = status
            accounts = stack.pick("smb", n=4, max_arr=50_000)
            health = lambda: stack.http.get("/health")  # noqa: E731

            async def run(account: str) -> list[tuple[str, list[str]]]:
                wf_id, = await stack.post_events(drop_events(stack.db, account))
                result = await stack.run_result(wf_id)
                return [(o.status, o.codes) for o in result.outcomes]

            # 1. A bad edit (a string limit): refused, loudly; the good bundle decides.
            _budget(folder, "0")
            await wait_for(lambda: status.refused is not None, what="the refusal")
            assert (await health()).json()["policy"]["refused"]
            assert await run(accounts[0]) == [("executed", [])]

            # 2. A good edit (no SMB budget): in force for the next run at once.
            _budget(folder, 0)
            await wait_for(lambda: status.refused is None and status.bundle_hash not in good, what="the good edit")
            good.add(status.bundle_hash)
            outcome = await run(accounts[1])
            assert outcome[0][0] == "denied" and "budget.account_exceeded" in outcome[0][1]

            # 3. A bad edit (Rego that does not compile): refused; the no-budget bundle stays.
            (folder / "autopilot" / "budget" / "policy.rego").write_text(original_rego + "\nnot rego at all {\n")
            await wait_for(lambda: status.refused is not None, what="the refusal")
            assert engine.bundle_hash in good
            outcome = await run(accounts[2])
            assert outcome[0][0] == "denied" and "budget.account_exceeded" in outcome[0][1]

            # 4. Both repaired: the original limits decide again.
            (folder / "autopilot" / "budget" / "policy.rego").write_text(original_rego)
            (folder / "autopilot" / "budget" / "data.json").write_text(original_data)
            await wait_for(lambda: status.refused is None and status.bundle_hash == original, what="the repair")
            assert await run(accounts[3]) == [("executed", [])]

            with Session(stack.db) as s:
                decided_by = {r.bundle_hash for r in s.exec(select(PolicyDecisionRecord))}
            assert decided_by <= good  # no decision ever came from a refused edit
            assert len(stack.mails()) == 2
    finally:
        stop()
