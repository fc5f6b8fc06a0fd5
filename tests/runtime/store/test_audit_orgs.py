"""Per-organisation chains on SQLite and Postgres: several worker processes appending
for two organisations at once extend each organisation's chain without a fork (the
store serialises appends per chain), and the store refuses a fork even from a writer
that skips the lock."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from datetime import UTC, datetime
from multiprocessing.synchronize import Barrier

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from autopilot.runtime.audit.keys import TrustedKeys
from autopilot.runtime.audit.verify import verify
from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.store import audit
from autopilot.runtime.store.audit import AuditEntry
from autopilot.runtime.store.db import make_engine

ORGS = ("org-a", "org-b")
PROCESSES = 4
RUNS_PER_PROCESS = 40


def step(org: str, key: str, name: str) -> AuditEvent:
    return AuditEvent(
        workflow_id=key.split("/")[0],
        run_key=key,
        step=name,
        actor="agent:x",
        input_hash="a" * 64,
        decision={"key": key},
        bundle_hash="b" * 64,
        spec_hash="c" * 64,
        org_id=org,
    )


def _worker(url: str, name: str, go: Barrier) -> None:
    db = make_engine(url)
    go.wait(120)  # all ready (imported, connected) before anyone appends
    for n in range(RUNS_PER_PROCESS):
        org = ORGS[n % 2]  # every process writes into both chains
        key = f"{name}/{n}"
        assert audit.append(db, [step(org, key, "plan"), step(org, key, "record")]) == 2
        # Yield the CPU: on a loaded machine one writer could otherwise finish first.
        time.sleep(0.002)


def test_processes_appending_for_two_organisations_extend_each_chain_without_a_fork(
    database_url: str,
) -> None:
    make_engine(database_url).dispose()  # migrated once, before the writers start
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Barrier(PROCESSES)
    procs = [
        ctx.Process(target=_worker, args=(database_url, f"w{i}", go)) for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    db = make_engine(database_url)
    with Session(db) as s:
        rows = list(s.exec(select(AuditEntry).order_by(col(AuditEntry.seq))))
        report = verify(s, TrustedKeys({}))
    per_org = PROCESSES * RUNS_PER_PROCESS  # half the runs, two entries each
    for org in ORGS:
        mine = [r for r in rows if r.org_id == org]
        assert [r.org_seq for r in mine] == list(range(1, per_org + 1))
        assert len({r.prev_hash for r in mine}) == per_org  # no two share a parent: no fork
        # They really ran at once: the chain holds several writers' runs interleaved.
        writers = [r.workflow_id for r in mine]
        assert sum(a != b for a, b in itertools.pairwise(writers)) > PROCESSES
    assert report.intact, report.findings
    assert [(c.org_id, c.verified) for c in report.chains] == [(o, per_org) for o in ORGS]
    db.dispose()


def test_the_store_refuses_a_fork_from_a_writer_that_skips_the_lock(database_url: str) -> None:
    db = make_engine(database_url)
    audit.append(db, [step("org-a", "wf/1", "plan"), step("org-b", "wf/2", "plan")])
    with Session(db) as s:
        head = s.exec(select(AuditEntry).where(AuditEntry.org_id == "org-a")).one()
    # A second entry 1 of org-a (another parent), or a second child of its genesis (another
    # number): each constraint alone refuses its fork.
    for org_seq, prev in ((head.org_seq, "e" * 64), (2, head.prev_hash)):
        fork = AuditEntry(
            **step("org-a", f"wf/fork-{org_seq}", "plan").model_dump(exclude={"org_id"}),
            org_id="org-a",
            org_seq=org_seq,
            at=datetime.now(UTC),
            prev_hash=prev,
            hash="f" * 64,
        )
        with Session(db) as s, pytest.raises(IntegrityError):
            s.add(fork)
            s.commit()
    db.dispose()
