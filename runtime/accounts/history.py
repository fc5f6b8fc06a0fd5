"""History backfill: years of a customer's usage into the daily rollups, fast, once,
and without waking an agent.

Why not `events import`: that path stores every event, rescores and evaluates triggers
per event (tens of events a second with Temporal up); a two-year history is millions
of events that are not news. Here a file streams in bounded batches of source rows;
each batch reads the account-days it touches, folds its events into them with the one
event fold (`fold.fold_into`, on plain in-memory rows, so an event means here exactly
what it means live), and writes them back with one executemany upsert, in one
transaction together with a ledger row (`HistoryBatch`). A re-run of the same file,
mapping and batch size skips the batches in the ledger, so it adds nothing, and an
interrupted import resumes where it stopped. Nothing here writes an Event or an
EventDispatch, scores, or talks to Temporal: history changes rollups and lifecycle
fields (a churn, a renewal) only."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, and_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from autopilot.runtime.accounts.fold import fold_into
from autopilot.runtime.accounts.history_mapping import Mapping
from autopilot.runtime.accounts.history_read import (
    HistoryError,
    Parsed,
    Parser,
    Report,
    history_files,
    rows_of,
)
from autopilot.runtime.accounts.subscription_events import BOOK_EVENTS, Book
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay, HistoryBatch
from autopilot.runtime.store.db import transaction

BATCH_ROWS = 50_000  # source rows per transaction: bounded memory, the lock held briefly
DAY_FIELDS = (
    "logins",
    "active_users",
    "modules",
    "tickets",
    "p1",
    "sentiment_sum",
    "sentiment_n",
    "payment_failed",
    "nps",
    "seats_used",
)


class _Day:
    """An account-day as the fold sees it (`AccountDay`'s fields), without the ORM's
    per-instance cost: a batch holds tens of thousands."""

    __slots__ = DAY_FIELDS

    def __init__(self, values: tuple[Any, ...] = (0, 0, 0, 0, 0, 0.0, 0, 0, -1, -1)) -> None:
        (
            self.logins,
            self.active_users,
            self.modules,
            self.tickets,
            self.p1,
            self.sentiment_sum,
            self.sentiment_n,
            self.payment_failed,
            self.nps,
            self.seats_used,
        ) = values

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in DAY_FIELDS}


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    """Write account-days by (account, day), replacing the values (they were folded
    from the stored ones): one executemany."""
    table = cast(Table, AccountDay.__table__)  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        ins = postgresql.insert(table)
        stmt = ins.on_conflict_do_update(
            constraint="uq_account_day", set_={f: ins.excluded[f] for f in DAY_FIELDS}
        )
    elif dialect == "sqlite":
        ins = sqlite.insert(table)
        stmt = ins.on_conflict_do_update(
            index_elements=["account_id", "day"], set_={f: ins.excluded[f] for f in DAY_FIELDS}
        )
    else:
        raise HistoryError("<store>", 0, "<dialect>", f"no upsert for {dialect}")
    session.execute(stmt, rows)


def fold_batch(
    session: Session, batch: list[Parsed], *, lock: bool
) -> dict[tuple[str, date], _Day]:
    """The account-days `batch` touches, read from the store and folded, in order, with
    the one event fold; lifecycle events change the (session's) accounts."""
    ids = sorted({p[0] for p in batch})
    lo, hi = min(p[1] for p in batch), max(p[1] for p in batch)
    table = cast(Table, AccountDay.__table__)  # type: ignore[attr-defined]
    query = select(table.c.account_id, table.c.day, *(table.c[f] for f in DAY_FIELDS)).where(
        and_(col(AccountDay.account_id).in_(ids), col(AccountDay.day).between(lo, hi))
    )
    if lock and session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update()  # SQLite: the batch holds the write lock already
    days = {(r[0], r[1]): _Day(tuple(r[2:])) for r in session.execute(query)}
    accounts = {
        a.id: a for a in session.execute(select(Account).where(col(Account.id).in_(ids))).scalars()
    }
    book = Book(session, today=datetime.now(UTC).date())  # a renewal's billing period
    book.load({p[0] for p in batch if p[2]["type"] in BOOK_EVENTS})
    for account_id, day, ev, times in batch:
        row = days.get((account_id, day))
        if row is None:
            row = days[(account_id, day)] = _Day()
        for _ in range(times):
            fold_into(
                cast(AccountDay, row), accounts[account_id], ev, day, current=False, book=book
            )
    book.write()
    return days


def digest_of(files: list[Path], mapping: Mapping, *, batch_rows: int, org_id: str) -> str:
    """An import's identity: the files' bytes, the mapping, the batch size and the org."""
    h = hashlib.sha256(f"{org_id}\n{batch_rows}\n{mapping.text}\n".encode())
    for path in files:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


def _batches(
    rows: Iterator[tuple[int, dict[str, Any]]], size: int
) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    chunk: list[tuple[int, dict[str, Any]]] = []
    for item in rows:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def import_history(
    engine: Engine,
    path: Path,
    mapping: Mapping,
    *,
    org_id: str,
    modules: tuple[str, ...],
    batch_rows: int = BATCH_ROWS,
    dry_run: bool = False,
    sample_rows: int = 2_000,
    progress: Callable[[str, int, int], None] | None = None,
) -> Report:
    """Import `path` (a file or a folder of them) into the organisation's rollups; with
    `dry_run`, fold the first `sample_rows` rows in memory and write nothing."""
    files = history_files(path)
    report = Report(files=[str(p) for p in files])
    with Session(engine) as session:
        known = set(
            session.execute(select(col(Account.id)).where(col(Account.org_id) == org_id)).scalars()
        )
    parser = Parser(mapping, known=known, modules=modules)
    if dry_run:
        return _dry_run(engine, files, parser, report, sample_rows)
    digest = digest_of(files, mapping, batch_rows=batch_rows, org_id=org_id)
    with Session(engine) as session:
        done = set(
            session.execute(
                select(col(HistoryBatch.batch)).where(col(HistoryBatch.digest) == digest)
            ).scalars()
        )
    number = 0
    for file in files:
        size = file.stat().st_size

        def moved(at: int, file: Path = file, size: int = size) -> None:
            if progress is not None:
                progress(file.name, at, size)

        parser.start(file)
        for chunk in _batches(rows_of(file, moved), batch_rows):
            number += 1
            report.rows += len(chunk)
            if number in done:
                report.skipped_batches += 1
                continue
            parsed = [p for line, row in chunk if (p := parser.parse(str(file), line, row, report))]
            with transaction(engine, writes=True) as session:
                days = fold_batch(session, parsed, lock=True) if parsed else {}
                if days:
                    _upsert(
                        session,
                        [
                            {"account_id": a, "day": d, **row.values()}
                            for (a, d), row in days.items()
                        ],
                    )
                session.add(
                    HistoryBatch(
                        org_id=org_id,
                        source=file.name,
                        digest=digest,
                        batch=number,
                        rows=len(chunk),
                        days=len(days),
                        at=datetime.now(UTC),
                    )
                )
            report.batches += 1
            report.account_days += len(days)
        moved(size)
    return report


def _dry_run(
    engine: Engine, files: list[Path], parser: Parser, report: Report, sample_rows: int
) -> Report:
    parsed: list[Parsed] = []
    for file in files:
        parser.start(file)
        for line, row in rows_of(file, None):
            if report.rows >= sample_rows:
                break
            report.rows += 1
            if (p := parser.parse(str(file), line, row, report)) is not None:
                parsed.append(p)
    if parsed:
        with Session(engine) as session:
            try:
                days = fold_batch(session, parsed, lock=False)
            finally:
                session.rollback()  # lifecycle events changed accounts: not for keeps
        report.account_days = len(days)
        report.sample = [
            {"account_id": a, "day": d.isoformat(), **row.values()}
            for (a, d), row in list(days.items())[:10]
        ]
    return report
