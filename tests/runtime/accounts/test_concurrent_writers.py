"""Two writers folding events into one account at once lose no update: the fold reads
the account and writes values computed from it, so writers must queue, not interleave."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlmodel import Session

from autopilot.runtime.accounts.ingest import Ingest
from autopilot.runtime.config import Settings
from autopilot.runtime.contracts.event import EventIn
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.services import build_services
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay


def test_two_writers_on_one_account_lose_no_login(tmp_path: Path) -> None:
    svc = build_services(Settings(data_dir=tmp_path))
    seed_portfolio(svc.db, n=5)
    ingest = Ingest(svc.db, None, svc.specs, task_queue="none", policy=svc.policy)  # type: ignore[arg-type]
    with Session(svc.db) as s:
        account = s.get(Account, "acc-0001")
        assert account is not None
        before = account.logins_30d
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(40):
                ingest.store([EventIn(account_id="acc-0001", type="login", logins=1)])
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Session(svc.db) as s:
        account = s.get(Account, "acc-0001")
        assert account is not None and account.logins_30d == before + 120
        days = s.query(AccountDay).filter(AccountDay.account_id == "acc-0001").all()
    assert sum(d.logins for d in days) >= 120
