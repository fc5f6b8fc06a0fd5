"""The store's schema comes from the migrations, on SQLite and on Postgres: a new store
is at the newest revision and matches the table models, a store made by `create_all`
before migrations is stamped and upgraded with its rows, and `autopilot db` says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import Session, SQLModel, select

from autopilot.runtime.store import migrations
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.db import connect, make_engine
from autopilot.runtime.store.events import Event

AUTOPILOT = str(Path(sys.executable).parent / "autopilot")


def _account() -> Account:
    return Account(id="acc-1", name="One Ltd", segment="smb", region="eu", arr=10_000.0, seats_purchased=10,
                   seats_used=9, active_users_30d=8, logins_30d=100, renewal_date=date(2027, 3, 1),
                   owner_csm="demo:dana")


def test_migrations_match_the_models(database_url: str) -> None:
    db = make_engine(database_url)
    assert migrations.current(db) == migrations.head()
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                SQLModel.metadata)
    db.dispose()
    assert diff == [], f"a table model changed without a migration (autopilot db revision -m …): {diff}"


def test_a_store_made_by_create_all_is_stamped_as_the_baseline_and_keeps_its_rows(database_url: str) -> None:
    old = connect(database_url)
    # What every start made before migrations: the baseline's tables, with no version table.
    migrations.upgrade(old, migrations.BASELINE)
    with old.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {migrations.VERSION_TABLE}")
        conn.execute(
            text(
                "INSERT INTO account (id, org_id, name, segment, region, arr, annual_cost_to_serve,"
                " seats_purchased, seats_used, active_users_30d, logins_30d, open_tickets, p1_open,"
                " sentiment, payment_failures_90d, renewal_date, owner_csm, tier, status, custom)"
                " VALUES ('acc-1', 'demo', 'One Ltd', 'smb', 'eu', 10000, 0, 10, 9, 8, 100, 0, 0,"
                " 0, 0, '2027-03-01', 'demo:dana', 'standard', 'active', '{}')"
            )
        )
    assert migrations.current(old) is None
    old.dispose()

    db = make_engine(database_url)
    assert migrations.current(db) == migrations.head()
    with Session(db) as s:
        assert s.exec(select(Account.id)).all() == ["acc-1"]
    db.dispose()
    make_engine(database_url).dispose()  # opening it again changes nothing
    assert "alembic_version" in inspect(connect(database_url)).get_table_names()


def test_datetimes_come_back_aware_in_utc(database_url: str) -> None:
    db = make_engine(database_url)
    berlin = datetime(2026, 3, 29, 3, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # just after the DST switch
    with Session(db) as s:
        s.add(_account())
        s.add(Event(account_id="acc-1", type="login", occurred_at=berlin, received_at=berlin, payload={}))
        s.commit()
    with Session(db) as s:
        event = s.exec(select(Event).where(Event.occurred_at > datetime(2026, 3, 29, 1, 29, tzinfo=UTC))).one()
    db.dispose()
    assert event.occurred_at == berlin and event.occurred_at.tzinfo == UTC
    assert event.occurred_at == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def _db_cli(database_url: str, *args: str) -> dict[str, object]:
    env = {**os.environ, "DATABASE_URL": database_url}
    out = subprocess.run([AUTOPILOT, "db", *args, "--json"], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    return json.loads(out.stdout)


def test_db_current_reads_and_db_upgrade_migrates(database_url: str) -> None:
    before = _db_cli(database_url, "current")
    assert before == {"ok": True, "database": before["database"], "current": None, "head": migrations.head(),
                      "up_to_date": False}
    assert migrations.current(connect(database_url)) is None  # reading did not migrate
    upgraded = _db_cli(database_url, "upgrade")
    assert (upgraded["from"], upgraded["to"]) == (None, migrations.head())
    assert migrations.current(connect(database_url)) == migrations.head()
