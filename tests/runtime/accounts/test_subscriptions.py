"""Subscriptions: ARR, seats, the renewal date and the start as of any day; a
subscriptions file sets the account's current fields (a re-run changes nothing); a
`renewed` event moves the renewal date by the billing period on record."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from autopilot.runtime.accounts.fold import fold
from autopilot.runtime.accounts.history import import_history
from autopilot.runtime.accounts.history_mapping import identity
from autopilot.runtime.accounts.subscriptions import (
    SubscriptionError,
    Terms,
    add_months,
    import_subscriptions,
    terms_as_of,
)
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.health.features import MODULES
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import Subscription
from autopilot.runtime.store.db import make_engine, transaction


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("seeded")
    engine = make_engine(f"sqlite:///{folder / 'a.db'}")
    seed_portfolio(engine, n=3)
    engine.dispose()
    return folder / "a.db"


@pytest.fixture
def engine(seeded: Path, tmp_path: Path) -> Engine:
    shutil.copy(seeded, tmp_path / "a.db")
    return make_engine(f"sqlite:///{tmp_path / 'a.db'}")


def _subscribe(engine: Engine, account_id: str, *subs: Subscription) -> None:
    with transaction(engine, writes=True) as session:
        for sub in subs:
            sub.account_id = account_id
            session.add(sub)


def test_terms_before_on_and_after_an_upgrade(engine: Engine) -> None:
    _subscribe(
        engine,
        "acc-0001",
        Subscription(account_id="", product="team", mrr=1000, quantity=10, start=date(2025, 1, 31), end=date(2025, 7, 1), billing_period=1),
        Subscription(account_id="", product="business", mrr=2500, quantity=25, start=date(2025, 7, 1), billing_period=12),
        Subscription(account_id="", product="addon", mrr=100, quantity=0, start=date(2025, 5, 1), billing_period=6),
    )  # fmt: skip
    with Session(engine) as session:
        assert terms_as_of(session, "acc-0001", date(2024, 12, 1)) == Terms(
            0, 0, None, date(2025, 1, 31)
        )
        assert terms_as_of(session, "acc-0001", date(2025, 3, 15)) == Terms(
            12_000,
            10,
            date(2025, 3, 31),
            date(2025, 1, 31),  # monthly, from the 31st
        )
        assert terms_as_of(session, "acc-0001", date(2025, 6, 30)) == Terms(
            13_200,
            10,
            date(2025, 7, 1),
            date(2025, 1, 31),  # ends before its next month
        )
        assert terms_as_of(session, "acc-0001", date(2025, 7, 1)) == Terms(
            31_200,
            25,
            date(2025, 11, 1),
            date(2025, 1, 31),  # the add-on renews first
        )
        assert terms_as_of(session, "acc-0001", date(2026, 1, 5)) == Terms(
            31_200, 25, date(2026, 5, 1), date(2025, 1, 31)
        )


def test_a_subscriptions_file_sets_the_accounts_terms_once(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "subscriptions.csv"
    path.write_text(
        "account_id,product,mrr,quantity,start,end,billing_period\n"
        "acc-0002,team,500,5,2024-02-10,2025-02-10,12\n"
        "acc-0002,business,2000,20,2025-02-10,,6\n"
    )
    for _ in range(2):
        with transaction(engine, writes=True) as session:
            done = import_subscriptions(session, path, org_id="demo", today=date(2025, 4, 1))
        assert (done.subscriptions, done.accounts) == (2, 1)
    with Session(engine) as session:
        account = session.get(Account, "acc-0002")
        assert account is not None
        assert (account.arr, account.seats_purchased) == (24_000, 20)
        assert (account.renewal_date, account.started_on) == (date(2025, 8, 10), date(2024, 2, 10))
        assert session.exec(select(func.count()).select_from(Subscription)).one() == 2


def test_a_bad_subscription_row_names_file_line_and_field(engine: Engine, tmp_path: Path) -> None:
    cases = {
        "acc-0002,team,500,5,2024-02-10,,7\n": "billing_period",
        "acc-0002,team,abc,5,2024-02-10,,12\n": "mrr",
        "acc-0002,team,500,5,2024-02-10,2024-01-01,12\n": "end",
        "nobody,team,500,5,2024-02-10,,12\n": "account_id",
    }
    for bad, field in cases.items():
        path = tmp_path / "subscriptions.csv"
        path.write_text(
            "account_id,product,mrr,quantity,start,end,billing_period\n"
            "acc-0002,team,500,5,2024-02-10,,12\n" + bad
        )
        with transaction(engine, writes=True) as session, pytest.raises(SubscriptionError) as err:
            import_subscriptions(session, path, org_id="demo", today=date(2025, 4, 1))
        assert (err.value.line, err.value.field) == (3, field), bad


@pytest.mark.parametrize(
    ("period", "moved_to"),
    [(1, date(2026, 2, 28)), (6, date(2026, 7, 31)), (None, date(2027, 1, 31))],
)
def test_renewed_moves_the_renewal_by_the_billing_period(engine: Engine, period: int | None, moved_to: date) -> None:  # fmt: skip
    if period is not None:
        _subscribe(engine, "acc-0003", Subscription(account_id="", product="p", mrr=10, start=date(2025, 1, 31), billing_period=period))  # fmt: skip
    with transaction(engine, writes=True) as session:
        account = session.get(Account, "acc-0003")
        assert account is not None
        account.renewal_date = date(2026, 1, 31)
        fold(session, account, {"type": "renewed"}, datetime(2026, 1, 30, tzinfo=UTC))
    with Session(engine) as session:
        account = session.get(Account, "acc-0003")
        assert account is not None and account.renewal_date == moved_to


def test_a_renewal_in_history_follows_the_billing_period(engine: Engine, tmp_path: Path) -> None:
    _subscribe(engine, "acc-0003", Subscription(account_id="", product="p", mrr=10, start=date(2025, 3, 15), billing_period=1))  # fmt: skip
    with transaction(engine, writes=True) as session:
        account = session.get(Account, "acc-0003")
        assert account is not None
        account.renewal_date = date(2025, 4, 15)
    path = tmp_path / "h.jsonl"
    path.write_text(
        '{"account_id": "acc-0003", "occurred_at": "2025-04-14", "type": "renewed"}\n' * 2
    )
    import_history(engine, path, identity(), org_id="demo", modules=MODULES)
    with Session(engine) as session:
        account = session.get(Account, "acc-0003")
        assert account is not None and account.renewal_date == date(2025, 6, 15)


def test_add_months_clamps_the_day() -> None:
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2024, 11, 30), 3) == date(2025, 2, 28)
    assert add_months(date(2024, 5, 15), -5) == date(2023, 12, 15)
