"""Alembic environment: runs on the connection handed over by `migrations.upgrade`.

There is no alembic.ini: the store opens the engine (SQLite pragmas, Postgres pool) and
passes its connection in `config.attributes["connection"]`, so a migration runs on
exactly the database the runtime uses."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from autopilot.runtime.store import db  # noqa: F401  (every table registers with the metadata)

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise TypeError("run migrations through autopilot.runtime.store.migrations.upgrade")
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    # SQLite cannot ALTER most columns: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
