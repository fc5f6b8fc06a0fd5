"""Reading a history: files into rows, rows into fold-ready events under a mapping,
with the event contract's checks on every cell; a bad cell fails with its file, line
and field. Kept apart from the writing (`history`) so each stays a screen or two."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

from autopilot.runtime.accounts.history_mapping import IGNORE, Mapping
from autopilot.runtime.contracts.event import MAX_COUNT, REQUIRED_FIELD

FORMATS = (".csv", ".jsonl", ".ndjson", ".parquet")


class HistoryError(ValueError):
    """A row (or file) that cannot be imported: `path:line: field: problem`."""

    def __init__(self, path: str, line: int, field: str, problem: str) -> None:
        self.path, self.line, self.field, self.problem = path, line, field, problem
        super().__init__(f"{path}:{line}: {field}: {problem}")


@dataclass
class Report:
    """What an import (or a dry run over a sample) did."""

    files: list[str] = field(default_factory=list)
    rows: int = 0  # source rows read
    events: int = 0  # events they stand for (a daily count of 40 is 40)
    account_days: int = 0  # rollup rows written
    batches: int = 0
    skipped_batches: int = 0  # already in the ledger: a re-run
    signals: Counter[str] = field(default_factory=Counter)  # source name -> signal, counted
    ignored: int = 0
    unmapped: Counter[str] = field(default_factory=Counter)
    unknown_accounts: Counter[str] = field(default_factory=Counter)
    sample: list[dict[str, Any]] = field(default_factory=list)  # dry run: resulting rollups


Parsed = tuple[str, date, dict[str, Any], int]  # account, day, event, times
Progress = Callable[[int], None]  # bytes read so far in the current file


def history_files(path: Path) -> list[Path]:
    """`path` itself, or the importable files of a folder in name order."""
    if path.is_dir():
        return sorted(
            p
            for p in path.iterdir()
            if p.suffix in FORMATS and p.is_file() and not p.name.startswith("subscriptions")
        )
    if path.suffix not in FORMATS:
        raise HistoryError(str(path), 0, "<format>", f"not one of {', '.join(FORMATS)}")
    return [path]


def rows_of(path: Path, progress: Progress | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each row of the file as a dict, with its line (row number for Parquet)."""
    name = str(path)
    if path.suffix == ".parquet":
        try:
            # An optional dependency: CSV and JSONL need nothing beyond the standard library.
            import pyarrow.parquet as pq  # noqa: PLC0415  # pyright: ignore[reportMissingImports]
        except ImportError:
            raise HistoryError(
                name, 0, "<format>", "reading Parquet needs pyarrow: pip install pyarrow"
            ) from None
        line = 0
        for chunk in pq.ParquetFile(path).iter_batches():  # pyright: ignore
            for row in chunk.to_pylist():  # pyright: ignore
                line += 1
                yield line, cast(dict[str, Any], row)
        return
    with path.open("rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        if path.suffix == ".csv":
            reader = csv.reader(text)
            header = next(reader, None) or []
            for i, cells in enumerate(reader):
                if progress is not None and not i % 10_000:
                    progress(raw.tell())
                yield reader.line_num, dict(zip(header, cells, strict=False))
        else:
            for line, body in enumerate(text, 1):
                if progress is not None and not line % 10_000:
                    progress(raw.tell())
                if not body.strip():
                    continue
                try:
                    row = json.loads(body)
                except json.JSONDecodeError as err:
                    raise HistoryError(name, line, "<json>", err.msg) from None
                if not isinstance(row, dict):
                    raise HistoryError(name, line, "<json>", "a row must be a JSON object")
                yield line, cast(dict[str, Any], row)


def _int(v: Any, hi: int = MAX_COUNT) -> int:
    n = int(v)
    if not 0 <= n <= hi:
        raise ValueError(f"must be between 0 and {hi}")
    return n


def _float(v: Any, lo: float, hi: float) -> float:
    x = float(v)
    if not lo <= x <= hi:  # also refuses NaN
        raise ValueError(f"must be between {lo} and {hi}")
    return x


# The event contract's payload checks (`EventIn`), on raw cells: pydantic per row would
# cost more than the rest of the import together.
_COERCE: dict[str, Callable[[Any], Any]] = {
    "active_users": _int,
    "seats_used": _int,
    "logins": _int,
    "seats": _int,
    "score": lambda v: _int(v, 10),
    "sentiment": lambda v: _float(v, -1.0, 1.0),
    "amount": lambda v: _float(v, 0.0, 1e12),
    "priority": lambda v: (
        v
        if v in ("P1", "P2", "P3", "P4")
        else (_ for _ in ()).throw(ValueError("must be one of P1, P2, P3, P4"))
    ),
}


class Parser:
    """Source rows into fold-ready events, under a mapping."""

    def __init__(self, mapping: Mapping, *, known: set[str], modules: tuple[str, ...]) -> None:
        self.mapping, self.known, self.modules = mapping, known, modules
        self._days: dict[str, date] = {}
        self._payload: tuple[str, ...] | None = None  # a CSV's payload columns, once
        self._fixed = False

    def start(self, path: Path) -> None:
        """A new file: a CSV's (or Parquet's) rows all have its header's columns."""
        self._payload, self._fixed = None, path.suffix in (".csv", ".parquet")

    def _day(self, value: Any) -> date:
        if isinstance(value, datetime):
            return value.astimezone(UTC).date() if value.tzinfo else value.date()
        if isinstance(value, date):
            return value
        found = self._days.get(value)
        if found is None:
            if len(value) == 10:
                found = date.fromisoformat(value)
                self._days[value] = found  # days repeat a million times; instants do not
            else:
                at = datetime.fromisoformat(value)
                found = at.astimezone(UTC).date() if at.tzinfo else at.date()
        return found

    def parse(self, name: str, line: int, row: dict[str, Any], report: Report) -> Parsed | None:
        cols = self.mapping.columns
        account, source = row.get(cols.account), row.get(cols.event)
        if not account:
            raise HistoryError(name, line, cols.account, "empty")
        if not source:
            raise HistoryError(name, line, cols.event, "empty")
        rule = self.mapping.rule(source)
        if rule is None:
            report.unmapped[source] += 1
            return None
        if rule.signal == IGNORE:
            report.ignored += 1
            return None
        if account not in self.known:
            report.unknown_accounts[account] += 1
            return None
        try:
            day = self._day(row.get(cols.time) or "")
        except (ValueError, TypeError):
            raise HistoryError(name, line, cols.time, "not a date or ISO timestamp") from None
        ev = dict(rule.base)
        payload = self._payload
        if payload is None or not self._fixed:
            payload = self._payload = tuple(k for k in _COERCE if k in row)
        for key in payload:  # payload columns: usually none
            value = row[key]
            if value is not None and value != "":
                try:
                    ev[key] = _COERCE[key](value)
                except (ValueError, TypeError) as err:
                    raise HistoryError(name, line, key, str(err)) from None
        module = row.get("module")
        if module:
            if module not in self.modules:
                raise HistoryError(name, line, "module", f"unknown module {module!r}")
            ev["module"] = module
        times = events = 1
        if cols.count is not None:
            try:
                count = _int(row.get(cols.count) or 0)
            except (ValueError, TypeError) as err:
                raise HistoryError(name, line, cols.count, str(err)) from None
            events = count
            if rule.count_as is not None:
                ev[rule.count_as] = count
            else:
                times = count
        required = REQUIRED_FIELD[rule.signal]
        if required is not None and required not in ev:
            raise HistoryError(name, line, required, f"required for a {rule.signal!r} event")
        report.signals[f"{source} -> {rule.signal}"] += 1
        report.events += events
        return account, day, ev, times
