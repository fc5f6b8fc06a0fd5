"""Policy bundles kept by hash, so a logged decision can be judged again by the very
rules that took it (the bundle its run pinned), long after the files on disk changed.

A bundle is written once, when an engine first loads it (start-up or hot reload): the
gate only ever decides with a bundle its engine loaded, so every hash in the decision
log has its files here (unless it was decided before this table existed: a gap that
replay names, never skips)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from sqlalchemy import JSON, Column
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Field, Session, SQLModel

from autopilot.runtime.contracts.hashing import sha256_hex

log = logging.getLogger(__name__)


class PolicyBundle(SQLModel, table=True):
    """One bundle's files ({relative path: text}); its hash is sha256 of those files."""

    hash: str = Field(primary_key=True)
    files: dict = Field(sa_column=Column(JSON, nullable=False))
    first_seen_at: datetime


def remember(db: Engine, bundle_hash: str, files: dict[str, str]) -> bool:
    """Insert if absent; True if this call stored it. The hash is checked against the
    files, so a row can never hold other rules than its hash names."""
    if sha256_hex(files) != bundle_hash:
        raise ValueError(f"bundle files do not hash to {bundle_hash}")
    with Session(db) as session:
        if session.get(PolicyBundle, bundle_hash) is not None:
            return False
        session.add(PolicyBundle(hash=bundle_hash, files=files, first_seen_at=datetime.now(UTC)))
        try:
            session.commit()
        except IntegrityError:  # another process stored it meanwhile: same files
            return False
    return True


def stored_files(session: Session, bundle_hash: str) -> dict[str, str] | None:
    row = session.get(PolicyBundle, bundle_hash)
    return dict(row.files) if row is not None else None


@runtime_checkable
class BundleSource(Protocol):
    """An engine that tells who listens each bundle it loads (hash, files)."""

    def on_load(self, listener: Callable[[str, dict[str, str]], None]) -> None: ...


def keep_bundles(db: Engine, engine: object) -> None:
    """Store every bundle `engine` loads from now on (the current one at once)."""
    if not isinstance(engine, BundleSource):
        return  # an engine without files (a test double): nothing to keep

    def store(bundle_hash: str, files: dict[str, str]) -> None:
        try:
            if remember(db, bundle_hash, files):
                log.info("policy bundle %s stored for replay", bundle_hash[:12])
        except OperationalError as err:
            # The gate must not stop because the archive is busy; replay names the gap.
            log.error("policy bundle %s not stored: %s", bundle_hash[:12], err)

    engine.on_load(store)
