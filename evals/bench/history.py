"""History backfill: how fast a customer's usage history lands in the daily rollups.

Generates a history in a customer's own vocabulary (a daily-count CSV: account, day,
event name, count, as product analytics exports it, plus a mapping YAML) for a seeded
portfolio, then times `autopilot history import` on it, as a user runs it (its own
process, one command). Baseline in the same run: a bare `executemany` of the same
account-day rows into a one-table SQLite file with the store's pragmas, committed per
batch (the cost of only writing the result down). A second run of the command must add
nothing.

    python -m autopilot.evals.bench.history --accounts 1000 --days 730
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, func, select

from autopilot.runtime.devstack.seed import seed_portfolio
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay
from autopilot.runtime.store.db import make_engine

MAPPING = """\
columns: {account: account_id, time: day, event: event, count: count}
events:
  App Opened: {signal: login, count_as: logins}
  Dashboard Viewed: {signal: feature_use, module: core}
  Report Exported: {signal: feature_use, module: reports}
  Workflow Run: {signal: feature_use, module: automation}
  Sync Completed: {signal: feature_use, module: integrations}
  Ticket Created: {signal: ticket_opened, set: {priority: P3}}
  Urgent Ticket: {signal: ticket_opened, set: {priority: P1}}
  Heartbeat: {signal: ignore}
"""
FEATURES = ("Dashboard Viewed", "Report Exported", "Workflow Run", "Sync Completed")


def generate(account_ids: list[str], days: int, out: Path, *, end: date, seed: int = 11) -> int:
    """Write `out` (CSV) and `out`.mapping.yaml; returns the events the rows stand for."""
    rng = random.Random(seed)
    events = 0
    start = end - timedelta(days=days)
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["account_id", "day", "event", "count"])
        for offset in range(days):
            day = (start + timedelta(days=offset)).isoformat()
            for account in account_ids:
                if rng.random() < 0.15:  # a quiet day
                    continue
                logins = rng.randint(1, 40)
                w.writerow([account, day, "App Opened", logins])
                feature = rng.choice(FEATURES)
                uses = rng.randint(1, 5)
                w.writerow([account, day, feature, uses])
                events += logins + uses
                if rng.random() < 0.03:
                    w.writerow([account, day, rng.choice(("Ticket Created", "Urgent Ticket")), 1])
                    events += 1
                if rng.random() < 0.02:
                    w.writerow([account, day, "Heartbeat", 1])
    out.with_suffix(".mapping.yaml").write_text(MAPPING)
    return events


def baseline(db_path: Path, rows: list[tuple[Any, ...]], batch: int) -> float:
    """Seconds to executemany `rows` into a one-table SQLite file, a commit per batch."""
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE d (account_id TEXT, day DATE, logins INT, active_users INT, modules INT,"
        " tickets INT, p1 INT, UNIQUE(account_id, day))"
    )
    began = time.perf_counter()
    for i in range(0, len(rows), batch):
        conn.executemany("INSERT INTO d VALUES (?,?,?,?,?,?,?)", rows[i : i + batch])
        conn.commit()
    seconds = time.perf_counter() - began
    conn.close()
    return seconds


def _cli(data_dir: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "AUTOPILOT_DATA_DIR": str(data_dir)}
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "autopilot.runtime.cli.main", "history", "import", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(done.stdout + done.stderr)
    return {**json.loads(done.stdout), "wall_seconds": round(time.perf_counter() - began, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--batch-rows", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "store"
        engine = make_engine(f"sqlite:///{data / 'autopilot.db'}")
        seed_portfolio(engine, n=args.accounts, org_id="demo")
        with Session(engine) as session:
            ids = list(session.exec(select(Account.id).order_by(col(Account.id))).all())
        history = Path(tmp) / "history.csv"
        began = time.perf_counter()
        events = generate(ids, args.days, history, end=date.today())
        generated = time.perf_counter() - began
        mapping = str(history.with_suffix(".mapping.yaml"))
        common = ["--mapping", mapping, "--batch-rows", str(args.batch_rows)]
        first = _cli(data, str(history), *common)
        again = _cli(data, str(history), *common)
        with Session(engine) as session:
            days = session.exec(select(func.count()).select_from(AccountDay)).one()
            sample = session.exec(select(AccountDay)).all()
        rows = [
            (r.account_id, r.day, r.logins, r.active_users, r.modules, r.tickets, r.p1)
            for r in sample
        ]
        base = baseline(Path(tmp) / "baseline.db", rows, args.batch_rows)
        out = {
            "accounts": len(ids),
            "days": args.days,
            "source_rows": first["rows"],
            "events": events,
            "file_mb": round(history.stat().st_size / 1e6, 1),
            "generate_seconds": round(generated, 1),
            "import_seconds": first["seconds"],
            "import_wall_seconds": first["wall_seconds"],
            "events_per_second": round(events / first["seconds"]),
            "rows_per_second": round(first["rows"] / first["seconds"]),
            "account_days": days,
            "baseline_executemany_seconds": round(base, 2),
            "baseline_rows_per_second": round(len(rows) / base),
            "rerun_batches_skipped": again["skipped_batches"],
            "rerun_account_days_written": again["account_days"],
            "rerun_seconds": again["seconds"],
        }
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
