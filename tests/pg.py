"""A real PostgreSQL for the tests that run on both stores.

A session fixture starts a throwaway cluster (`initdb` + `pg_ctl`, Debian's
`postgresql` package) in a temp dir on a free port — as the `postgres` user when the
suite runs as root, since the server refuses root — and each test gets a database of
its own. Without the package the Postgres half of those tests is skipped.

Which tests run on both: the ones under POSTGRES_SUBSET that use `database_url`
(directly, or through the `stack` fixture); every other test gets SQLite."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

POSTGRES_SUBSET = (
    "tests/runtime/store/",
    "tests/runtime/ledger/",
    "tests/runtime/test_events_api.py::",
    "tests/runtime/accounts/test_subscription_events.py::",
    "tests/runtime/accounts/test_sweep_due.py::",
    "tests/runtime/accounts/test_compliance_due.py::",
    "tests/runtime/approvals/test_inbox.py::",
    "tests/runtime/approvals/test_listing.py::",
    "tests/workflows/test_agent_run.py::",
)
SUPERUSER = "autopilot"


def _bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


@dataclass(frozen=True)
class PostgresCluster:
    port: int

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres",
                               autocommit=True)

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (initdb, pg_ctl): apt-get install postgresql")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="autopilot-pg-"))
    if os.geteuid() == 0:  # postgres refuses to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    # A test database, not a durable one: no fsync.
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                    "-o", options, "start"], check=True, capture_output=True)
    try:
        yield PostgresCluster(port)
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The store for this test: SQLite in tmp_path, or a fresh database on the cluster."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield f"sqlite:///{tmp_path / 'autopilot.db'}"
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    name = cluster.create_database()
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" in metafunc.fixturenames and metafunc.definition.nodeid.startswith(POSTGRES_SUBSET):
        metafunc.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
