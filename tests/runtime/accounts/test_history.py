"""History import: the rollups it writes are the one event fold's, event by event; a
re-run adds nothing; it never stores an event, a dispatch or a run (and needs no
Temporal); mapping and row errors name file, line and field; a dry run writes nothing."""

from __future__ import annotations

import csv
import json
import random
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from autopilot.runtime.accounts.fold import fold, fold_into
from autopilot.runtime.accounts.history import HistoryError, import_history
from autopilot.runtime.accounts.history_mapping import (
    MappingError,
    identity,
    load_mapping,
    set_vocabulary,
    vocabulary,
)
from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.health.features import MODULES
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay, HistoryBatch
from autopilot.runtime.store.db import make_engine, transaction
from autopilot.runtime.store.events import Event, EventDispatch, EventKey

ACCOUNTS = [f"acc-{i:04d}" for i in range(1, 5)]
START = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("seeded")
    engine = make_engine(f"sqlite:///{folder / 'a.db'}")
    seed_portfolio(engine, n=len(ACCOUNTS))
    engine.dispose()
    return folder / "a.db"


def _copy(seeded: Path, to: Path) -> Engine:
    shutil.copy(seeded, to)
    return make_engine(f"sqlite:///{to}")


def _events(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """Raw events of every kind the fold knows, several to an account-day."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        at = START + timedelta(days=rng.randint(0, 6), minutes=rng.randint(0, 1439))
        ev: dict[str, Any] = {"account_id": rng.choice(ACCOUNTS), "occurred_at": at.isoformat()}
        kind = rng.choice(
            ["login", "login", "login0", "usage_snapshot", "feature_use", "ticket_opened"]
            + ["nps", "sentiment", "payment_failed", "renewed", "expanded", "invoice"]
        )
        match kind:
            case "login":
                ev |= {"type": "login"} | (
                    {"logins": rng.randint(1, 9)} if rng.random() < 0.5 else {}
                )
            case "login0":
                ev |= {"type": "login", "logins": 0}
            case "usage_snapshot":
                ev |= {
                    "type": kind,
                    "active_users": rng.randint(0, 50),
                    "seats_used": rng.randint(0, 60),
                }
            case "feature_use":
                ev |= {"type": kind, "module": rng.choice(MODULES)}
            case "ticket_opened":
                ev |= {"type": kind, "priority": rng.choice(["P1", "P2", "P3"])}
            case "nps":
                ev |= {"type": kind, "score": rng.randint(0, 10)}
            case "sentiment":
                ev |= {"type": kind, "sentiment": round(rng.uniform(-1, 1), 3)}
            case "expanded":
                ev |= {"type": kind, "amount": 1000.0, "seats": 3}
            case _:
                ev |= {"type": kind} | (
                    {"amount": 50.0} if kind in ("payment_failed", "invoice") else {}
                )
        out.append(ev)
    return out


def _write(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def _rollups(engine: Engine) -> dict[tuple[str, str], tuple[Any, ...]]:
    with Session(engine) as session:
        rows = session.exec(select(AccountDay)).all()
        return {
            (r.account_id, r.day.isoformat()): (
                r.logins, r.active_users, r.modules, r.tickets, r.p1, round(r.sentiment_sum, 9),
                r.sentiment_n, r.payment_failed, r.nps, r.seats_used,
            )
            for r in rows
        }  # fmt: skip


def _lifecycle(engine: Engine) -> dict[str, tuple[Any, ...]]:
    with Session(engine) as session:
        return {
            a.id: (a.renewal_date, a.arr, a.seats_purchased, a.status, a.logins_30d)
            for a in session.exec(select(Account)).all()
        }


def _one_by_one(engine: Engine, events: list[dict[str, Any]]) -> None:
    with transaction(engine, writes=True) as session:
        for raw in events:
            ev = {k: v for k, v in raw.items() if k not in ("account_id", "occurred_at")}
            account = session.get(Account, raw["account_id"])
            assert account is not None
            fold(session, account, ev, datetime.fromisoformat(raw["occurred_at"]), current=False)
            session.flush()


def _import(engine: Engine, path: Path, **kw: Any):  # type: ignore[no-untyped-def]
    return import_history(engine, path, identity(), org_id="demo", modules=MODULES, **kw)


def test_rollups_equal_the_fold_event_by_event(seeded: Path, tmp_path: Path) -> None:
    events = _events(600)
    path = _write(tmp_path / "h.jsonl", events)
    bulk, single = _copy(seeded, tmp_path / "bulk.db"), _copy(seeded, tmp_path / "single.db")
    before = _rollups(bulk)
    report = _import(bulk, path, batch_rows=37)  # batches split account-days
    _one_by_one(single, events)
    assert report.batches == -(-600 // 37) and report.rows == 600
    assert _rollups(bulk) == _rollups(single) != before
    assert _lifecycle(bulk) == _lifecycle(single)  # renewals, expansions; not current state
    # The same events as a CSV (every payload column, empty where an event has none).
    columns = ["account_id", "occurred_at", "type", "logins", "active_users", "seats_used"]
    columns += ["priority", "score", "sentiment", "amount", "module", "seats"]
    with (tmp_path / "h.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(events)
    from_csv = _copy(seeded, tmp_path / "csv.db")
    _import(from_csv, tmp_path / "h.csv", batch_rows=37)
    assert _rollups(from_csv) == _rollups(single) and _lifecycle(from_csv) == _lifecycle(single)


def test_a_rerun_adds_nothing(seeded: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "h.jsonl", _events(300))
    engine = _copy(seeded, tmp_path / "a.db")
    first = _import(engine, path, batch_rows=50)
    after, accounts = _rollups(engine), _lifecycle(engine)
    again = _import(engine, path, batch_rows=50)
    assert first.batches == 6 and again.batches == 0 and again.skipped_batches == 6
    assert _rollups(engine) == after and _lifecycle(engine) == accounts
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(HistoryBatch)).one() == 6


def test_history_never_stores_an_event_a_dispatch_or_a_run(seeded: Path, tmp_path: Path) -> None:
    # No Temporal client exists here at all: the import cannot start a workflow.
    path = _write(tmp_path / "h.jsonl", _events(200))
    engine = _copy(seeded, tmp_path / "a.db")
    report = _import(engine, path)
    assert report.account_days > 0
    with Session(engine) as session:
        for table in (Event, EventDispatch, EventKey):
            assert session.exec(select(func.count()).select_from(table)).one() == 0


def test_mapping_errors_name_file_line_and_field(tmp_path: Path) -> None:
    cases = {
        "events:\n  Opened: {signal: login}\n  Exported:\n    signal: feature_uze\n": (4, "events.Exported.signal"),
        "events:\n  Exported:\n    signal: feature_use\n    module: billing\n": (4, "events.Exported.module"),
        "columns:\n  account: id\n  tyme: at\n": (3, "columns.tyme"),
        "events:\n  T:\n    signal: ticket_opened\n": (3, "events.T.signal"),  # needs a priority
        "events:\n  T:\n    signal: ticket_opened\n    set: {priority: P9}\n": (4, "events.T.set"),
    }  # fmt: skip
    for i, (text, (line, field)) in enumerate(cases.items()):
        path = tmp_path / f"m{i}.yaml"
        path.write_text(text)
        with pytest.raises(MappingError) as err:
            load_mapping(path, modules=MODULES)
        assert (err.value.path, err.value.line, err.value.field) == (str(path), line, field), text


def test_row_errors_name_file_line_and_field(seeded: Path, tmp_path: Path) -> None:
    engine = _copy(seeded, tmp_path / "a.db")
    path = tmp_path / "daily.csv"
    path.write_text(
        "account_id,day,event,count\nacc-0001,2025-03-01,Opened,3\nacc-0001,2025-03-02,Opened,x\n"
    )
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "columns: {account: account_id, time: day, event: event, count: count}\n"
        "events:\n  Opened: {signal: login, count_as: logins}\n"
    )
    rules = load_mapping(mapping, modules=MODULES)
    with pytest.raises(HistoryError) as err:
        import_history(engine, path, rules, org_id="demo", modules=MODULES)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), 3, "count")


def test_daily_counts_map_onto_signals(seeded: Path, tmp_path: Path) -> None:
    engine = _copy(seeded, tmp_path / "a.db")
    path = tmp_path / "daily.csv"
    path.write_text(
        "account_id,day,event,count\n"
        "acc-0002,2024-01-05,App Opened,7\n"
        "acc-0002,2024-01-05,Report Exported,2\n"
        "acc-0002,2024-01-05,Heartbeat,9\n"
        "acc-0002,2024-01-05,Mystery,1\n"
        "acc-0002,2024-01-05,Ticket,2\n"
        "nobody,2024-01-05,App Opened,7\n"
    )
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "columns: {account: account_id, time: day, event: event, count: count}\n"
        "events:\n"
        "  App Opened: {signal: login, count_as: logins}\n"
        "  Report Exported: {signal: feature_use, module: reports}\n"
        "  Ticket: {signal: ticket_opened, set: {priority: P1}}\n"
        "  Heartbeat: {signal: ignore}\n"
    )
    report = import_history(
        engine, path, load_mapping(mapping, modules=MODULES), org_id="demo", modules=MODULES
    )
    assert report.unmapped == {"Mystery": 1} and report.ignored == 1
    assert report.unknown_accounts == {"nobody": 1} and report.events == 11
    with Session(engine) as session:
        row = session.exec(select(AccountDay).where(AccountDay.account_id == "acc-0002", col(AccountDay.day) == datetime(2024, 1, 5).date())).one()  # fmt: skip
    assert (row.logins, row.active_users, row.tickets, row.p1) == (7, 1, 2, 2)
    assert row.modules == 1 << MODULES.index("reports")


def test_a_dry_run_writes_nothing(seeded: Path, tmp_path: Path) -> None:
    events = _events(200) + [
        {"account_id": "acc-0001", "occurred_at": START.isoformat(), "type": "churned"}
    ]
    path = _write(tmp_path / "h.jsonl", events)
    engine = _copy(seeded, tmp_path / "a.db")
    before, accounts = _rollups(engine), _lifecycle(engine)
    report = _import(engine, path, dry_run=True, sample_rows=1000)
    assert report.rows == 201 and report.account_days > 0 and report.sample
    assert _rollups(engine) == before and _lifecycle(engine) == accounts
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(HistoryBatch)).one() == 0
    # What it shows is what the import writes.
    _import(engine, path)
    after = _rollups(engine)
    for row in report.sample:
        assert after[(row["account_id"], row["day"])][0] == row["logins"]


def test_a_login_with_zero_logins_counts_zero(seeded: Path, tmp_path: Path) -> None:
    engine = _copy(seeded, tmp_path / "a.db")
    at = datetime(2023, 6, 1, 12, tzinfo=UTC)
    with transaction(engine, writes=True) as session:
        account = session.get(Account, "acc-0003")
        assert account is not None
        logins = account.logins_30d
        fold(session, account, {"type": "login", "logins": 0}, at)
        session.flush()
        row = session.exec(select(AccountDay).where(AccountDay.account_id == "acc-0003", AccountDay.day == at.date())).one()  # fmt: skip
        assert (row.logins, row.active_users, account.logins_30d) == (0, 0, logins)
        fold_into(row, account, {"type": "login"}, at.date(), current=True)
        assert (row.logins, row.active_users, account.logins_30d) == (1, 1, logins + 1)


def test_an_organisation_sets_its_own_segments_and_modules(seeded: Path, tmp_path: Path) -> None:
    engine = _copy(seeded, tmp_path / "a.db")
    with transaction(engine, writes=True) as session:
        assert vocabulary(session, "demo").modules == MODULES
        set_vocabulary(
            session, "demo", segments=["strategic", "growth"], modules=["core", "reports"]
        )
        with pytest.raises(ValueError, match="modules"):
            set_vocabulary(session, "demo", segments=None, modules=["billing"])
    with Session(engine) as session:
        vocab = vocabulary(session, "demo")
    assert vocab.segments == ("strategic", "growth") and vocab.modules == ("core", "reports")
    mapping = tmp_path / "m.yaml"
    mapping.write_text("events:\n  X: {signal: feature_use, module: automation}\n")
    with pytest.raises(MappingError) as err:
        load_mapping(mapping, modules=vocab.modules)
    assert err.value.field == "events.X.module"


def test_postgres_rollups_equal_the_fold_and_a_rerun_adds_nothing(
    postgres_cluster: Any, tmp_path: Path
) -> None:
    # Postgres has its own upsert (ON CONFLICT ON CONSTRAINT) and locks the rows it reads.
    events = _events(300)
    path = _write(tmp_path / "h.jsonl", events)
    names = [postgres_cluster.create_database() for _ in range(2)]
    try:
        bulk, single = (make_engine(postgres_cluster.url(n)) for n in names)
        for engine in (bulk, single):
            seed_portfolio(engine, n=len(ACCOUNTS))
        first = _import(bulk, path, batch_rows=41)
        _one_by_one(single, events)
        assert first.batches == 8 and _rollups(bulk) == _rollups(single)
        assert _lifecycle(bulk) == _lifecycle(single)
        again = _import(bulk, path, batch_rows=41)
        assert again.skipped_batches == 8 and _rollups(bulk) == _rollups(single)
        bulk.dispose()
        single.dispose()
    finally:
        for n in names:
            postgres_cluster.drop_database(n)
