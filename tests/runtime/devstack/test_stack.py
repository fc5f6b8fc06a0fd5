"""The embedded stack as `autopilot up` runs it, with other commands run beside it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from autopilot.runtime.auth.users import issue_token
from autopilot.runtime.config import Settings
from autopilot.runtime.devstack.scenarios import pick_accounts
from autopilot.runtime.devstack.stack import CRM_URL_FILE, running_stack
from tests.conftest import free_port

AUTOPILOT = str(Path(sys.executable).parent / "autopilot")


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """The CLI as a process, without blocking this loop (the stack's CRM and worker run on it)."""
    proc = await asyncio.create_subprocess_exec(AUTOPILOT, *args, env={**os.environ, **env},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_runs_rollback_in_another_process_undoes_a_write_to_the_embedded_crm(
        temporal_env: WorkflowEnvironment, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, temporal_address=temporal_env.client.service_client.config.target_host,
                        database_url=f"sqlite:///{tmp_path / 'autopilot.db'}", opa_url="", crm_url="", smtp_host="",
                        smtp_port=free_port(), api_port=free_port(), task_queue=f"tq-{uuid.uuid4().hex[:10]}")
    async with running_stack(settings, ui=False) as stack:
        assert (tmp_path / CRM_URL_FILE).read_text().strip() == stack.urls["crm"]
        account, = pick_accounts(stack.services.db, "smb", max_arr=50_000)
        token = issue_token(stack.services.db, user_id="adam")
        async with httpx.AsyncClient(base_url=stack.urls["api"], headers={"Authorization": f"Bearer {token}"}) as api:
            for ev in ({"account_id": account, "type": "usage_snapshot", "active_users": 1},
                       {"account_id": account, "type": "feature_use", "module": "reports"}):
                (await api.post("/events", json=ev)).raise_for_status()
        run = f"agent:adoption:{account}"
        handle = stack.client.get_workflow_handle(run)
        for _ in range(2400):  # the first stretch done: the run sleeps until its follow-up
            if (await handle.query("progress"))["status"] == "waiting":
                break
            await asyncio.sleep(0.05)
        await handle.terminate("rolled back before its follow-up")
        async with httpx.AsyncClient(base_url=stack.urls["crm"]) as crm:
            assert (await crm.get(f"/accounts/{account}")).json()["fields"]  # the run wrote its status

            code, out, err = await cli("runs", "rollback", run, "--json", env={
                "AUTOPILOT_DATA_DIR": str(tmp_path), "DATABASE_URL": settings.db_url,
                "AUTOPILOT_CRM_URL": "", "OPA_URL": ""})
            assert code == 0, out + err
            steps = {s["tool"]: s["status"] for s in json.loads(out)["steps"]}
            assert steps["crm_update_field"] == "compensated", out
            assert not any((await crm.get(f"/accounts/{account}")).json()["fields"].values())
    assert not (tmp_path / CRM_URL_FILE).exists()  # a stopped stack leaves no URL to a dead CRM
