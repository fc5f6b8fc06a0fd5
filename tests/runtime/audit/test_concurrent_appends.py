"""Three worker processes appending to one SQLite file extend one chain: the store,
not a per-process lock, serialises the read-head/insert pair."""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

from autopilot.runtime.audit.keys import SigningKey
from tests.runtime.audit.conftest import check, entries

RUNS_PER_PROCESS = 150


def _worker(url: str, name: str, go: Barrier) -> None:
    from autopilot.runtime.contracts.audit import AuditEvent
    from autopilot.runtime.store import audit
    from autopilot.runtime.store.db import make_engine

    db = make_engine(url)
    go.wait(60)  # all three ready (imported, connected) before anyone appends
    for n in range(RUNS_PER_PROCESS):
        key = f"{name}/{n}"
        steps = [
            AuditEvent(
                workflow_id=name,
                run_key=key,
                step=step,
                actor=f"agent:{name}",
                input_hash="a" * 64,
                decision={"n": n},
                bundle_hash="b" * 64,
                spec_hash="c" * 64,
            )
            for step in ("plan", "record")
        ]
        assert audit.append(db, steps) == 2
        time.sleep(0.002)  # yield the CPU: on a loaded machine one writer could otherwise finish first


def test_three_processes_appending_at_once_make_one_unbroken_chain(
    tmp_path: Path,
    db,
    key: SigningKey,  # type: ignore[no-untyped-def]
) -> None:
    url = f"sqlite:///{tmp_path / 'autopilot.db'}"
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Barrier(3)
    procs = [ctx.Process(target=_worker, args=(url, f"w{i}", go)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    rows = entries(db)
    assert len(rows) == 3 * RUNS_PER_PROCESS * 2
    assert len({r.prev_hash for r in rows}) == len(rows)  # no two entries share a parent: no fork
    # They really ran at once: three blocks one after the other would switch writer twice.
    switches = sum(a.workflow_id != b.workflow_id for a, b in zip(rows, rows[1:], strict=False))
    assert switches > 2
    report = check(db, key)
    assert report.intact and report.verified == len(rows), report.findings
