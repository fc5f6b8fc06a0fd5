"""The demo's moves on the real components: events posted and approvals decided through
the HTTP API as the demo's users, runs awaited on Temporal, the store read for what the
supervisor settled. `demo.py` tells the scenario with them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlmodel import Session, select

from autopilot.runtime.accounts.ingest import Stored
from autopilot.runtime.agents.triggers import SCHEDULE_EVENT
from autopilot.runtime.auth.users import issue_token
from autopilot.runtime.contracts.run import AgentRunResult
from autopilot.runtime.devstack.scenarios import drop_events
from autopilot.runtime.devstack.stack import Running
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.actions import SupervisorConflict
from autopilot.runtime.store.events import Event

Say = Callable[[str], None]


async def wait(predicate: Callable[[], Awaitable[Any]], what: str, timeout: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := await predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"demo: timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


async def finished(client: Any, workflow_id: str, timeout: float = 120) -> Any:
    """A run's result; a run still waiting after `timeout` (on an approval, say) is an error, not a hang."""
    try:
        handle = client.get_workflow_handle(workflow_id, result_type=AgentRunResult)
        return await asyncio.wait_for(handle.result(), timeout)
    except TimeoutError:
        raise TimeoutError(f"demo: {workflow_id} did not finish within {timeout:g} s") from None


def conflicts(db: Any, account_id: str) -> list[SupervisorConflict]:
    with Session(db) as s:
        return list(
            s.exec(select(SupervisorConflict).where(SupervisorConflict.account_id == account_id))
        )


def seats_purchased(db: Any, account_id: str) -> int:
    with Session(db) as s:
        row = s.get(Account, account_id)
        assert row is not None
        return row.seats_purchased


async def conflicts_async(db: Any, account_id: str) -> list[SupervisorConflict]:
    return conflicts(db, account_id)


async def progress_waiting(handle: Any) -> bool:
    return (await handle.query("progress"))["status"] == "waiting"


async def compliance_run(stack: Running, account_id: str) -> list[str]:
    """What the daily sweep does for one account: a `schedule` event, dispatched."""
    with Session(stack.services.db) as s:
        event = Event(
            account_id=account_id,
            type=SCHEDULE_EVENT,
            occurred_at=stack.services.clock(),
            received_at=stack.services.clock(),
            payload={"agents": ["compliance"]},
        )
        s.add(event)
        s.commit()
        assert event.id is not None
        stored = Stored(
            event_id=event.id, account_id=account_id, type=SCHEDULE_EVENT, agents=["compliance"]
        )
    return [s.workflow_id for s in await stack.ingest.dispatch([stored])]


def outcomes(result: Any) -> str:
    return (
        ", ".join(
            f"{o.step or o.tool} {o.status}" + (f" ({', '.join(o.codes)})" if o.codes else "")
            for o in result.outcomes
        )
        or "none"
    )


class DemoApi:
    """The running stack's API as the demo's users: Adam posts the events, Maria reads
    the inbox, each approver decides as themselves (a token each, issued once)."""

    def __init__(self, stack: Running, api: httpx.AsyncClient, say: Say) -> None:
        self.stack, self.api, self.say = stack, api, say
        self.db = stack.services.db
        self._tokens: dict[str, str] = {}

    def as_user(self, user: str) -> dict[str, str]:
        if user not in self._tokens:
            self._tokens[user] = issue_token(self.db, user_id=user, label="demo")
        return {"Authorization": f"Bearer {self._tokens[user]}"}

    def owner(self, account: str) -> str:
        with Session(self.db) as s:
            row = s.get(Account, account)
            assert row is not None
            return row.owner_csm

    async def approvals(self, status: str = "pending") -> list[dict[str, Any]]:
        r = await self.api.get(
            "/approvals", params={"status": status}, headers=self.as_user("maria")
        )
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    async def pending_for(self, account: str) -> list[dict[str, Any]]:
        return [a for a in await self.approvals() if a["account_id"] == account]

    async def signal(self, account: str, severe: bool = False) -> str:
        started: list[str] = []
        for ev in drop_events(self.db, account, severe=severe):
            r = await self.api.post("/events", json=ev, headers=self.as_user("adam"))
            r.raise_for_status()
            started += r.json()["started"]
            self.say(
                f"  event {ev['type']:<15} → {account}  {('starts ' + ', '.join(r.json()['started'])) if r.json()['started'] else ''}"
            )
        assert len(started) == 1, started
        return started[0]

    async def decide(
        self, account: str, verdict: str, user: str, reason: str = "", agent: str | None = None
    ) -> dict[str, Any]:
        async def items() -> list[dict[str, Any]]:
            return [a for a in await self.pending_for(account) if agent in (None, a["agent"])]

        item = (await wait(items, f"an approval for {account}"))[0]
        body = {"verdict": verdict, "payload_hash": item["payload_hash"], "reason": reason}
        r = await self.api.post(
            f"/approvals/{item['id']}/decision", json=body, headers=self.as_user(user)
        )
        r.raise_for_status()
        out = r.json()
        left = (
            f", still needs {', '.join(out['remaining_roles'])}"
            if out["status"] == "pending"
            else ""
        )
        self.say(
            f"  {user} {verdict}s {item['action']['tool']} on {account} → {out['status']}{left} "
            f"({'; '.join(item['reasons'])})"
        )
        return item

    async def post(self, ev: dict[str, Any]) -> list[str]:
        r = await self.api.post("/events", json=ev, headers=self.as_user("adam"))
        r.raise_for_status()
        return list(r.json()["started"])

    async def approving(
        self, account: str, workflow_id: str, *, until_waiting: bool = False
    ) -> Any:
        """The run's result (or, `until_waiting`, its first wait), its owner approving
        whatever it asks on the way (a follow-up, say)."""
        handle = self.stack.client.get_workflow_handle(workflow_id, result_type=AgentRunResult)
        task = asyncio.ensure_future(handle.result())
        while not task.done():
            if until_waiting and await progress_waiting(handle):
                task.cancel()
                return None
            for item in await self.pending_for(account):
                for role in item["roles"]:
                    await self.decide(
                        account, "approve", self.owner(account) if role == "csm" else "maria"
                    )
            await asyncio.wait([task], timeout=0.5)
        return task.result()
