"""A small audit trail on a real SQLite file, with a real Ed25519 key."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from autopilot.runtime.audit import keys
from autopilot.runtime.audit.keys import SigningKey, TrustedKeys
from autopilot.runtime.audit.verify import TrailReport, verify
from autopilot.runtime.contracts.audit import AuditEvent
from autopilot.runtime.store import audit
from autopilot.runtime.store.audit import AuditEntry
from autopilot.runtime.store.db import make_engine

ORG = "demo"  # AuditEvent's default organisation: the chain these events go into


def event(run: int, step: str) -> AuditEvent:
    return AuditEvent(
        workflow_id=f"wf-{run}",
        run_key=f"wf-{run}/e/0",
        step=step,
        actor="agent:x",
        input_hash="a" * 64,
        decision={"status": "executed"},
        bundle_hash="b" * 64,
        spec_hash="c" * 64,
    )


def append_runs(db: Engine, first: int, last: int) -> None:
    for run in range(first, last + 1):
        audit.append(db, [event(run, "plan"), event(run, "record")])


def entries(db: Engine) -> list[AuditEntry]:
    with Session(db) as s:
        return list(s.exec(select(AuditEntry).order_by(col(AuditEntry.seq))))


def check(db: Engine, key: SigningKey) -> TrailReport:
    with Session(db) as s:
        return verify(s, TrustedKeys({key.key_id: key.public}))


@pytest.fixture
def key(tmp_path: Path) -> SigningKey:
    return keys.load_or_create(tmp_path / "audit-ed25519.pem")


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    return make_engine(f"sqlite:///{tmp_path / 'autopilot.db'}")
