"""What one batch of events leaves warm for the next in the same process: its accounts,
their recent rollups, 90-day windows, contacts and the risk of their stored score, so
that a bulk import reads each account once, not once per batch.

Only for as long as SQLite can vouch that nobody else wrote since: the stamp is taken
inside the batch's write transaction after its last write, and the next batch compares
it with where the store is before it reads anything (and again once it holds the write
lock: see `Ingest.store`). Another connection's commit (another process, or this one's
other connections) changes `PRAGMA data_version`; a write on the same connection
changes `total_changes`. Any difference, another day, or another database than SQLite:
nothing is warm."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
from sqlmodel import Session

from autopilot.runtime.contracts.account import ContactInfo
from autopilot.runtime.store.accounts import Account
from autopilot.runtime.store.customer import AccountDay

WARM_ACCOUNTS = 10_000  # accounts kept warm (~7 kB each, most of it their windows)
WARM_DAYS = 2  # rollups kept warm: today's and yesterday's (where live events fall)

Stamp = tuple[object, int, int, date]


def stamp(session: Session, today: date) -> Stamp | None:
    """Where the store is, as this transaction's connection sees it (None: the
    database cannot say)."""
    if session.get_bind().dialect.name != "sqlite":
        return None
    conn = session.connection()
    raw = conn.connection.dbapi_connection
    version = conn.exec_driver_sql("PRAGMA data_version").scalar_one()
    return (raw, int(version), int(raw.total_changes), today)  # type: ignore[union-attr]


@dataclass
class Warm:
    """Rows exactly as the store holds them at `stamp` (transient objects: no session
    tracks them), and what was derived from them. Least recently used first."""

    stamp: Stamp | None = None
    accounts: dict[str, Account] = field(default_factory=dict)
    days: dict[tuple[str, date], AccountDay] = field(default_factory=dict)
    windows: dict[str, np.ndarray] = field(default_factory=dict)  # as of the stamp's day
    contacts: dict[str, list[ContactInfo]] = field(default_factory=dict)
    risks: dict[str, float | None] = field(default_factory=dict)  # None: never scored

    def trim(self, today: date) -> None:
        while len(self.accounts) > WARM_ACCOUNTS:
            self.accounts.pop(next(iter(self.accounts)))
        first = today - timedelta(days=WARM_DAYS - 1)
        self.days = {k: r for k, r in self.days.items() if k[0] in self.accounts and k[1] >= first}
        self.windows = {a: w for a, w in self.windows.items() if a in self.accounts}
        self.contacts = {a: c for a, c in self.contacts.items() if a in self.accounts}
        self.risks = {a: r for a, r in self.risks.items() if a in self.accounts}


class WarmCache:
    """One process's `Warm`. A batch takes it (nobody else can use it meanwhile: a
    batch that fails drops it) and gets it only if the stamp still holds; it keeps a
    new one once its transaction has committed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._warm: Warm | None = None

    def take(self, now: Stamp | None) -> Warm:
        """The warm state, if the store is still where it was left (`now`: its stamp)."""
        with self._lock:
            warm, self._warm = self._warm, None
        if warm is None or warm.stamp is None or warm.stamp != now:
            return Warm()
        return warm

    def keep(self, warm: Warm) -> None:
        if warm.stamp is None:
            return
        warm.trim(warm.stamp[3])
        with self._lock:
            self._warm = warm
